"""CLI behaviour: user errors end with exit code 2 and one line; --help needs no torch."""


import numpy as np
import pytest


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_tasks_lists_families(cli):
    code, out, _ = cli("tasks")
    assert code == 0
    for family in ("manifold", "sensors", "digits"):
        assert family in out


def test_unknown_family(cli, tmp_path):
    code, _, err = cli("meta-train", "--family", "nope", "--out",
                           str(tmp_path / "c.safetensors"), "--meta-steps", "1")
    assert_one_line_error(code, err, "unknown task family 'nope'", "manifold")


@pytest.mark.parametrize("flag, value, match", [
    ("--prefilter-choice", "sometimes", "--prefilter-choice must be adapt or meta"),
    ("--posttrain-tau", "0", "--posttrain-tau must be > 0"),
    ("--dense-latents", "16,8", "--dense-latents must be increasing positive integers"),
    ("--dense-latents", "8,x", "--dense-latents must be increasing positive integers"),
])
def test_bad_meta_train_option_names_the_flag(cli, tmp_path, flag, value, match):
    code, _, err = cli("meta-train", "--family", "digits-res", "--out",
                           str(tmp_path / "c.safetensors"), flag, value)
    assert_one_line_error(code, err, match)
    assert not (tmp_path / "c.safetensors").exists()


def test_dense_latents_are_for_image_families(cli, tmp_path):
    code, _, err = cli("meta-train", "--family", "manifold", "--out",
                           str(tmp_path / "c.safetensors"), "--dense-latents", "8,16")
    assert_one_line_error(code, err, "--dense-latents is for image families")
    code, _, err = cli("meta-train", "--family", "digits-res", "--out",
                           str(tmp_path / "c.safetensors"), "--linear-bypass")
    assert_one_line_error(code, err, "feeds the dense code: add --dense-latents")


def test_csv_with_nan(cli, tmp_path):
    path = tmp_path / "x.csv"
    rows = np.random.default_rng(0).normal(size=(20, 5)).astype(str)
    rows[3, 2] = "nan"
    path.write_text("a,b,c,d,e\n" + "\n".join(",".join(r) for r in rows))
    code, _, err = cli("adapt-and-export", "builtin:manifold", "--data", str(path),
                           "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "NaN")
    assert not (tmp_path / "b").exists()


def test_3d_npy_for_mlp(cli, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((10, 8, 8), np.float32))
    code, _, err = cli("adapt-and-export", "builtin:manifold", "--data", str(path),
                           "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "2-D", "(10, 8, 8)")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_corrupt_checkpoint(cli, tmp_path, damage):
    from metaae_edge.meta.checkpoint import resolve_checkpoint

    ckpt = tmp_path / "c.safetensors"
    data = resolve_checkpoint("builtin:manifold").read_bytes()
    if damage == "truncate":
        ckpt.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00" * 64)
    code, _, err = cli("adapt-and-export", str(ckpt), "--task", "manifold:0",
                           "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "checkpoint")


@pytest.mark.parametrize("args, needle", [
    (("run", "b", "--precision", "int9"), "'int9' is not one of"),
    (("--bogus",), "No such option: --bogus"),
    (("run",), "Missing argument"),
])
def test_usage_errors_are_one_line(cli, args, needle):
    """A bad option value, an unknown option or a missing argument: one line, exit 2 (not
    the framework's framed multi-line panel), naming the command's --help."""
    code, _, err = cli(*args)
    assert_one_line_error(code, err, needle, "--help`")


def test_help_and_success_still_exit_zero(cli):
    code, out, err = cli("run", "--help")
    assert code == 0 and "Usage" in out and not err.strip()
    code, out, _ = cli("tasks")
    assert code == 0 and "manifold" in out


def test_ctrl_c_prints_interrupted(cli, monkeypatch):
    from metaae_edge import cli as cli_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "app", interrupted)
    code, _, err = cli("tasks")
    assert code == 130 and err.strip() == "interrupted"
