from __future__ import annotations

from bench import steps


def test_a_revision_is_checked_out_beside_this_one_and_removed_after() -> None:
    with steps.worktree("HEAD") as root:
        assert (root / "app" / "__main__.py").exists()
        assert steps._git("-C", str(root), "rev-parse", "HEAD") == steps._git("rev-parse", "HEAD")
    assert not root.exists()
    assert str(root) not in steps._git("worktree", "list")
