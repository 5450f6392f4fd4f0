"""A correct but slow function for tunesmith to speed up: only the marked region is rewritten.

check.py holds the tests every rewrite must pass; evaluate.py times it. The name and signature stay fixed.
"""


# tunesmith: begin fast_function
def count_pairs(nums: list[int], target: int) -> int:
    """How many index pairs i < j have nums[i] + nums[j] == target: every pair is tried, O(n^2)."""
    count = 0
    for i in range(len(nums)):
        for j in range(i + 1, len(nums)):
            if nums[i] + nums[j] == target:
                count += 1
    return count


# tunesmith: end fast_function
