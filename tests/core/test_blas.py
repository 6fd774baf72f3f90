"""`vista explore` runs numpy with one BLAS thread, and gives its child processes the user's environment."""

from __future__ import annotations

import os

import pytest

from vista_tui.core import blas


def test_one_blas_thread_keeps_the_users_setting_and_the_childrens_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blas, "_set_here", {})
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    blas.one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert "OPENBLAS_NUM_THREADS" not in blas.child_environ()  # a render worker gets what the user had

    monkeypatch.setattr(blas, "_set_here", {})
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    blas.one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert blas.child_environ()["OPENBLAS_NUM_THREADS"] == "4"
