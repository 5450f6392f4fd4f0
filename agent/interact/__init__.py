"""Interactive sessions: a person at ``tunesmith chat``, an assistant over ``tunesmith mcp``.

- :mod:`agent.interact.session`: a study held open, with the job that can run its trials;
- :mod:`agent.interact.actions`: everything either can do to it, one table (slash commands, tools);
- :mod:`agent.interact.assistant`: chat's model, which answers and proposes actions to confirm;
- :mod:`agent.interact.chat`: the terminal REPL;
- :mod:`agent.interact.mcp_server`: the Model Context Protocol server.
"""
