"""The records process's environment (proxy/records/daemon.py): glibc malloc settings that keep
the spool's pieces on the heap, and the operator's own settings left alone."""

from __future__ import annotations

from proxy.records.daemon import MALLOC_ENVIRONMENT, records_process_environment


def test_the_records_process_gets_heap_malloc_settings() -> None:
    env = records_process_environment({"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert all(env[name] == value for name, value in MALLOC_ENVIRONMENT.items())
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) > 4 << 20  # a 4 MiB piece comes from the heap


def test_an_operators_own_malloc_settings_win() -> None:
    mine = records_process_environment({"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert mine["MALLOC_MMAP_THRESHOLD_"] == "131072"
