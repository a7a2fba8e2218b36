"""The tools' stderr filter drops TensorFlow's run-time C++ noise and keeps the rest."""

import os

from detectlab._quiet import filtered_native_stderr


def test_native_stderr_filter_drops_only_the_noise(capfd, monkeypatch):
    monkeypatch.delenv("DETECTLAB_TF_LOGS", raising=False)
    with filtered_native_stderr():
        os.write(2, b"E0000 00:00:1.0 1 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512. Falling back\n")
        os.write(2, b"[detectlab] kept\n")
        os.write(2, b"error: a.json: kept too\n")
    err = capfd.readouterr().err
    lines = err.splitlines()  # (other tests' leftover threads may write here too)
    assert "[detectlab] kept" in lines and "error: a.json: kept too" in lines and "oneDNN" not in err, err
    os.write(2, b"oneDNN supports DT_INT32 only on platforms with AVX-512 (after: not filtered)\n")
    assert "after: not filtered" in capfd.readouterr().err
