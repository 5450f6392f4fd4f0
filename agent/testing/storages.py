"""The storage contract: every rule the loop relies on, run against any :class:`~agent.storage.Storage`.

Subclass :class:`StorageContract` and implement :meth:`StorageContract.make_storage`; each test gets a
fresh, empty storage.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from agent.errors import BudgetExhausted, TunesmithError
from agent.space import ParamValue
from agent.storage import (
    LLMCallRecord,
    ProposalConflict,
    Storage,
    StorageError,
    StudyExists,
    TrialBudgetReached,
)
from agent.storage.base import Clash
from agent.storage.liveness import WorkerIdentity
from agent.trial import Proposal, TrialState

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def point(x: float, proposer: str = "random") -> Proposal:
    return Proposal({"x": x}, proposer)


def near(x: float) -> Clash:
    """A clash test for proposals at (nearly) ``x``."""

    def clash(params: Mapping[str, ParamValue]) -> bool:
        value = params["x"]
        return isinstance(value, float) and abs(value - x) < 1e-3

    return clash


class StorageContract:
    """The tests every storage passes. Subclasses implement :meth:`make_storage`."""

    def make_storage(self, tmp_path: Path) -> Storage:
        raise NotImplementedError

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        storage = self.make_storage(tmp_path)
        storage.register_worker("w")
        yield storage
        storage.close()

    @pytest.fixture
    def study_id(self, storage: Storage) -> int:
        return storage.create_study("s", "minimize", "loss", SPACE, {"seed": 3}).id

    # Studies ------------------------------------------------------------------------------------------
    def test_a_study_round_trips(self, storage: Storage) -> None:
        created = storage.create_study("first", "maximize", "acc", SPACE, {"proposer": "bo", "seed": 1})
        storage.create_study("second", "minimize", None, SPACE, {})
        found = storage.get_study("first")
        assert found is not None and found.id == created.id
        assert (found.direction, found.metric, found.space, found.settings) == (
            "maximize",
            "acc",
            SPACE,
            created.settings,
        )
        assert [s.name for s in storage.list_studies()] == ["first", "second"]
        assert storage.get_study("missing") is None
        updated = storage.update_settings(created.id, {"proposer": "random"})
        assert updated.settings == {"proposer": "random"} and storage.get_study("first") == updated

    def test_a_taken_name_raises_study_exists(self, storage: Storage) -> None:
        storage.create_study("same", "minimize", None, SPACE, {})
        with pytest.raises(StudyExists, match="already exists") as caught:
            storage.create_study("same", "maximize", None, SPACE, {})
        assert isinstance(caught.value, StorageError) and isinstance(caught.value, TunesmithError)

    # Trials -------------------------------------------------------------------------------------------
    def test_trials_are_numbered_in_order_and_round_trip(self, storage: Storage, study_id: int) -> None:
        first = storage.start_trial(study_id, "w", Proposal({"x": 0.1}, "llm", "near best", None, (7,)))
        second = storage.start_trial(study_id, "w", point(0.2))
        assert first is not None and second is not None
        assert (first.number, second.number) == (0, 1)
        assert (first.state, first.proposer, first.rationale, first.parents) == (
            TrialState.RUNNING,
            "llm",
            "near best",
            (7,),
        )
        done = storage.finish_trial(study_id, 0, TrialState.COMPLETE, 0.5, {"loss": 0.5, "ms": 3.0}, feedback="ok")
        assert (done.state, done.value, dict(done.metrics), done.feedback) == (
            TrialState.COMPLETE,
            0.5,
            {"loss": 0.5, "ms": 3.0},
            "ok",
        )
        assert done.finished_at is not None and done.duration_s is not None and done.duration_s >= 0
        stored = storage.trials(study_id)
        assert [t.number for t in stored] == [0, 1] and stored[0] == done and stored[1].state is TrialState.RUNNING

    def test_a_trial_is_finished_once(self, storage: Storage, study_id: int) -> None:
        storage.start_trial(study_id, "w", point(0.1))
        storage.finish_trial(study_id, 0, TrialState.FAILED, error="OOM")
        with pytest.raises(StorageError, match="already failed"):
            storage.finish_trial(study_id, 0, TrialState.COMPLETE, 1.0)
        with pytest.raises(StorageError, match="does not exist"):
            storage.finish_trial(study_id, 5, TrialState.COMPLETE, 1.0)
        with pytest.raises(ValueError, match="finished state"):
            storage.finish_trial(study_id, 0, TrialState.RUNNING)

    def test_the_trial_budget_is_exact_and_interrupted_trials_do_not_count(
        self, storage: Storage, study_id: int
    ) -> None:
        for i in range(3):
            storage.start_trial(study_id, "w", point(i / 10), max_trials=3)
        with pytest.raises(TrialBudgetReached) as caught:
            storage.start_trial(study_id, "w", point(0.9), max_trials=3)
        assert isinstance(caught.value, BudgetExhausted) and caught.value.reason == "trial budget"
        storage.finish_trial(study_id, 2, TrialState.FAILED, error="interrupted", interrupted=True)
        assert storage.count_budgeted_trials(study_id) == 2
        again = storage.start_trial(study_id, "w", point(0.9), max_trials=3)
        assert again is not None and again.number == 3
        assert storage.trials(study_id)[2].interrupted

    def test_enqueued_points_are_claimed_in_order_once(self, storage: Storage, study_id: int) -> None:
        storage.enqueue(study_id, {"x": 0.3})
        storage.enqueue(study_id, {"x": 0.4}, proposer="user", rationale="a known default")
        assert storage.changes(study_id).queued == 2
        first = storage.start_trial(study_id, "w", None)
        second = storage.start_trial(study_id, "w", None)
        assert first is not None and second is not None
        assert (dict(first.params), first.proposer) == ({"x": 0.3}, "enqueued")
        assert (dict(second.params), second.proposer, second.rationale) == ({"x": 0.4}, "user", "a known default")
        assert storage.start_trial(study_id, "w", None) is None
        assert storage.changes(study_id).queued == 0

    def test_changes_return_only_what_changed(self, storage: Storage, study_id: int) -> None:
        for i in range(3):
            storage.start_trial(study_id, "w", point(i / 10))
        everything = storage.changes(study_id)
        assert [t.number for t in everything.trials] == [0, 1, 2]
        assert storage.changes(study_id, everything.seq).trials == []
        storage.finish_trial(study_id, 1, TrialState.COMPLETE, 0.2)
        storage.start_trial(study_id, "w", point(0.5))
        later = storage.changes(study_id, everything.seq)
        assert sorted(t.number for t in later.trials) == [1, 3] and later.seq > everything.seq
        assert next(t for t in later.trials if t.number == 1).state is TrialState.COMPLETE

    def test_a_clashing_proposal_is_refused(self, storage: Storage, study_id: int) -> None:
        before = storage.changes(study_id).seq
        storage.start_trial(study_id, "w", point(0.5))
        seen = storage.changes(study_id).seq
        with pytest.raises(ProposalConflict):
            storage.start_trial(study_id, "w", point(0.5000001), since=before, clash=near(0.5))
        accepted = storage.start_trial(study_id, "w", point(0.5000001), since=seen, clash=near(0.5))
        assert accepted is not None and accepted.number == 1  # trial 0 was in the proposer's view

    def test_a_clash_is_looked_for_in_every_trial_changed_since_the_view(self, storage: Storage, study_id: int) -> None:
        """By sequence number, not trial number: a trial that finished after the view was read (a row
        updated, not inserted) is checked, however many trials were started after it."""
        storage.start_trial(study_id, "w", point(0.5))
        storage.start_trial(study_id, "w", point(0.1))
        seen = storage.changes(study_id).seq
        storage.finish_trial(study_id, 0, TrialState.COMPLETE, 1.0)
        with pytest.raises(ProposalConflict):
            storage.start_trial(study_id, "w", point(0.5), since=seen, clash=near(0.5))
        assert storage.start_trial(study_id, "w", point(0.1), since=seen, clash=near(0.1)) is not None

    # What a running trial reports ----------------------------------------------------------------------
    def test_intermediate_values_user_attrs_and_artifacts(self, storage: Storage, study_id: int) -> None:
        storage.start_trial(study_id, "w", point(0.1))
        storage.start_trial(study_id, "w", point(0.2))
        seq = storage.changes(study_id).seq
        storage.report(study_id, 0, 2, 0.7)
        storage.report(study_id, 0, 1, 0.9)
        storage.report(study_id, 0, 2, 0.6)  # a step reported again replaces the first value
        storage.set_user_attr(study_id, 0, "gpu", {"name": "h100", "count": 1})
        program = "def f():\n    return 1\n"
        digest = storage.put_artifact(program)
        assert storage.put_artifact(program.encode()) == digest  # content-addressed: stored once
        storage.attach_artifact(study_id, 0, "program", digest)
        storage.attach_artifact(study_id, 1, "program", digest)
        assert storage.get_artifact(digest) == program.encode()
        changed = {t.number: t for t in storage.changes(study_id, seq).trials}
        assert set(changed) == {0, 1}
        assert changed[0].intermediate == ((1, 0.9), (2, 0.6))
        assert dict(changed[0].user_attrs) == {"gpu": {"name": "h100", "count": 1}}
        assert dict(changed[0].artifacts) == {"program": digest} == dict(changed[1].artifacts)
        with pytest.raises(StorageError, match="no artifact"):
            storage.get_artifact("0" * 64)
        with pytest.raises(StorageError, match="no artifact"):
            storage.attach_artifact(study_id, 0, "other", "0" * 64)
        with pytest.raises(StorageError, match="does not exist"):
            storage.report(study_id, 9, 1, 0.5)
        with pytest.raises(TypeError):
            storage.set_user_attr(study_id, 0, "bad", object())

    # Model calls --------------------------------------------------------------------------------------
    def test_model_calls_are_stored_linked_and_summed(self, storage: Storage, study_id: int) -> None:
        messages = [{"role": "user", "content": "propose"}]
        ok = storage.record_llm_call(
            study_id,
            LLMCallRecord(
                "propose",
                "m",
                messages,
                reply='{"x": 0.1}',
                parsed={"x": 0.1},
                prompt_tokens=10,
                completion_tokens=5,
                usd=0.002,
                latency_s=0.3,
                mode="json_schema",
            ),
        )
        storage.record_llm_call(
            study_id, LLMCallRecord("propose", "m", messages, error="timeout", attempts=3, trial_number=0)
        )
        storage.start_trial(study_id, "w", Proposal({"x": 0.1}, "llm", None, ok))
        calls = storage.llm_calls(study_id)
        assert len(calls) == 2 and calls[0].id == ok and calls[0].trial_numbers == (0,)
        assert calls[0].parsed == {"x": 0.1} and calls[0].messages == messages and calls[0].mode == "json_schema"
        assert (calls[1].error, calls[1].attempts, calls[1].trial_number) == ("timeout", 3, 0)
        spend = storage.spend(study_id)
        assert (spend.calls, spend.failed_calls, spend.tokens) == (2, 1, 15)
        assert spend.usd == pytest.approx(0.002)

    # Liveness -----------------------------------------------------------------------------------------
    def test_trials_of_unknown_or_dead_workers_are_recovered_and_requeued(
        self, storage: Storage, study_id: int
    ) -> None:
        storage.start_trial(study_id, "w", point(0.1))  # this process: alive
        storage.start_trial(study_id, _exited_worker(storage), Proposal({"x": 0.2}, "bo", "GP"))  # its process is gone
        assert storage.recover_interrupted(study_id, requeue=True) == [1]
        trials = storage.trials(study_id)
        assert trials[0].state is TrialState.RUNNING
        assert (trials[1].state, trials[1].interrupted, trials[1].error) == (TrialState.FAILED, True, "interrupted")
        requeued = storage.start_trial(study_id, "w", None)
        assert requeued is not None and (dict(requeued.params), requeued.proposer) == ({"x": 0.2}, "bo")
        assert storage.recover_interrupted(study_id) == []

    def test_a_late_result_of_an_interrupted_trial_is_kept_and_its_requeued_copy_withdrawn(
        self, storage: Storage, study_id: int
    ) -> None:
        stalled = _exited_worker(storage)
        storage.start_trial(study_id, stalled, point(0.2))
        assert storage.recover_interrupted(study_id, requeue=True) == [0]
        assert storage.changes(study_id).queued == 1
        late = storage.finish_trial(study_id, 0, TrialState.COMPLETE, 0.393, {"loss": 0.393})
        assert (late.state, late.value, late.interrupted, late.late) == (TrialState.COMPLETE, 0.393, False, True)
        assert storage.changes(study_id).queued == 0 and storage.count_budgeted_trials(study_id) == 1
        with pytest.raises(StorageError, match="already complete"):
            storage.finish_trial(study_id, 0, TrialState.COMPLETE, 0.5)

    def test_a_trial_marked_interrupted_twice_stays_as_it_is(self, storage: Storage, study_id: int) -> None:
        storage.start_trial(study_id, _exited_worker(storage), point(0.2))
        storage.recover_interrupted(study_id)
        again = storage.finish_trial(study_id, 0, TrialState.FAILED, error="interrupted", interrupted=True)
        assert (again.interrupted, again.late) == (True, False)

    def test_a_point_enqueued_once_is_not_enqueued_again(self, storage: Storage, study_id: int) -> None:
        assert storage.enqueue(study_id, {"x": 0.3}, once=True)
        assert not storage.enqueue(study_id, {"x": 0.3}, once=True)
        claimed = storage.start_trial(study_id, "w", None)
        assert claimed is not None
        assert not storage.enqueue(study_id, {"x": 0.3}, once=True)  # already evaluated: still not again
        assert storage.enqueue(study_id, {"x": 0.3})  # without once, a point may be queued twice on purpose
        assert storage.changes(study_id).queued == 1

    def test_known_secrets_are_scrubbed_from_what_is_stored(
        self, storage: Storage, study_id: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PLANTED_API_KEY", "sk-planted-0123456789")
        secret = "sk-planted-0123456789"
        storage.start_trial(study_id, "w", point(0.2))
        storage.finish_trial(study_id, 0, TrialState.FAILED, error=f"bad key {secret}", feedback=f"env: {secret}")
        storage.record_llm_call(
            study_id,
            LLMCallRecord("propose", "m", [{"role": "user", "content": secret}], reply=secret, error=secret),
        )
        created = storage.create_study("other", "minimize", None, SPACE, {"model": f"http://h/v1#{secret}"})
        stored = [storage.trials(study_id)[0], storage.llm_calls(study_id)[0], storage.get_study("other"), created]
        assert secret not in repr(stored) and "***" in repr(stored)

    # Concurrency --------------------------------------------------------------------------------------
    # Steering -----------------------------------------------------------------------------------------
    def test_events_round_trip_oldest_first(self, storage: Storage, study_id: int) -> None:
        other = storage.create_study("other", "minimize", None, SPACE, {}).id
        narrow = storage.add_event(study_id, "narrow", {"name": "x", "low": 0.2, "high": 0.4}, "ann")
        note = storage.add_event(study_id, "note", {"text": "try small x"}, "api")
        storage.add_event(other, "note", {"text": "elsewhere"}, "bob")
        assert (narrow.kind, narrow.payload, narrow.author, narrow.undone_at) == (
            "narrow",
            {"name": "x", "low": 0.2, "high": 0.4},
            "ann",
            None,
        )
        assert storage.events(study_id) == [narrow, note]
        assert narrow.created_at <= note.created_at and narrow.id != note.id
        assert [e.payload["text"] for e in storage.events(other)] == ["elsewhere"]

    def test_undo_marks_the_newest_event_in_force_and_keeps_it(self, storage: Storage, study_id: int) -> None:
        assert storage.undo_event(study_id) is None
        first = storage.add_event(study_id, "fix", {"name": "x", "value": 0.5}, "api")
        second = storage.add_event(study_id, "note", {"text": "n"}, "api")
        undone = storage.undo_event(study_id)
        assert undone is not None and undone.id == second.id and undone.undone_at is not None
        again = storage.undo_event(study_id)
        assert again is not None and again.id == first.id
        assert storage.undo_event(study_id) is None
        stored = storage.events(study_id)
        assert [e.id for e in stored] == [first.id, second.id] and not any(e.active for e in stored)
        assert stored[1].undone_at == undone.undone_at

    def test_events_of_an_unknown_study_are_refused(self, storage: Storage) -> None:
        with pytest.raises(StorageError, match="does not exist"):
            storage.add_event(999, "note", {"text": "n"}, "api")

    def test_concurrent_undos_take_different_events(self, storage: Storage, study_id: int) -> None:
        for n in range(8):
            storage.add_event(study_id, "note", {"text": str(n)}, "api")
        taken: list[int] = []
        lock = threading.Lock()

        def undo() -> None:
            event = storage.undo_event(study_id)
            assert event is not None
            with lock:
                taken.append(event.id)

        threads = [threading.Thread(target=undo) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(taken)) == 8 and storage.undo_event(study_id) is None

    def test_threads_get_unique_numbers_and_never_overshoot_the_budget(self, storage: Storage, study_id: int) -> None:
        started: list[int] = []
        refused: list[int] = []
        lock = threading.Lock()

        def work(offset: int) -> None:
            for i in range(15):
                try:
                    trial = storage.start_trial(study_id, "w", point((offset * 15 + i) / 100), max_trials=40)
                except TrialBudgetReached:
                    with lock:
                        refused.append(offset)
                    continue
                assert trial is not None
                with lock:
                    started.append(trial.number)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(started) == list(range(40)) and len(refused) == 20
        assert storage.count_budgeted_trials(study_id) == 40


def _exited_worker(storage: Storage) -> str:
    """Register a worker whose process has exited, so its running trials count as interrupted."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    storage.register_worker("ghost", WorkerIdentity(socket.gethostname(), gone.pid, None))
    return "ghost"
