"""DeepSpeed training for real on this CPU (gloo): the shipped configs, 2-process ZeRO-2 and ZeRO-3 runs through the
torchrun, accelerate and deepspeed launchers, resumption after a kill, and export to a loadable release."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from alm.cli import app
from alm.config import PRESETS
from training.config import TrainConfig, accelerate_settings, load_config, read_yaml
from training.train_alm import TrainAlmConfig, parse_args, train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "training" / "configs").glob("alm_*.yaml"))
ACCELERATE = ROOT / "training" / "configs" / "accelerate_deepspeed.yaml"
STEPS = 6


# --- configs --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_give_valid_deepspeed_json(path: Path) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    cfg = load_config(path, TrainAlmConfig)
    assert f"alm_{cfg.preset}" in PRESETS and {"corpus", "out"} <= set(read_yaml(path))
    for on_gpu in (False, True):
        ds = cfg.deepspeed_config(on_gpu=on_gpu)
        parsed = DeepSpeedConfig(json.loads(json.dumps(ds)))  # DeepSpeed's own validation of every field
        assert parsed.zero_optimization_stage == cfg.zero_stage
        assert parsed.gradient_accumulation_steps == cfg.grad_accum and parsed.gradient_clipping == cfg.grad_clip
        assert parsed.bfloat16_config.enabled == (cfg.bf16 and on_gpu and not cfg.fp16)
        assert bool(ds["zero_optimization"].get("offload_optimizer")) == cfg.offload_optimizer
    # a flag given on the command line wins over the file
    corpus, out, flagged, _ = parse_args(["--config", str(path), "--steps", "7", "--no-bf16"])
    assert (corpus, out) == (read_yaml(path)["corpus"], read_yaml(path)["out"])
    assert flagged.steps == 7 and not flagged.bf16 and flagged.preset == cfg.preset and flagged.lr == cfg.lr


def test_accelerate_config_reaches_the_trainer() -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    acc = load_config_from_file(str(ACCELERATE))
    assert acc.distributed_type == DistributedType.DEEPSPEED and acc.deepspeed_config["zero_stage"] == 2
    # what `accelerate launch` puts in the environment for it (measured on this machine)
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2",
           "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2", "ACCELERATE_GRADIENT_CLIPPING": "0.5",
           "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "none",
           "ACCELERATE_MIXED_PRECISION": "no"}
    assert accelerate_settings(env) == {"engine": "deepspeed", "zero_stage": 2, "grad_accum": 2, "grad_clip": 0.5,
                                        "offload_optimizer": True, "offload_params": False, "bf16": False,
                                        "fp16": False}
    with pytest.raises(ValueError, match="only CPU offload"):
        accelerate_settings({**env, "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "nvme"})


@pytest.mark.parametrize(("settings", "message"), [
    ({"zero_stage": 4}, "zero_stage"), ({"offload_params": True, "zero_stage": 2}, "offload_params"),
    ({"offload_optimizer": True}, "offload_optimizer"), ({"engine": "plain", "zero_stage": 2}, "engine=deepspeed"),
    ({"engine": "ddp"}, "engine"), ({"grad_accum": 0}, "grad_accum"), ({"lr": 0.0}, "lr")])
def test_inconsistent_settings_are_named(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_config_files_reject_unknown_and_mistyped_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nzero_stages: 2\n")
    with pytest.raises(ValueError, match="unknown setting.*zero_stages"):
        load_config(bad, TrainAlmConfig)
    bad.write_text("steps: many\n")
    with pytest.raises(ValueError, match="steps should be int"):
        load_config(bad, TrainAlmConfig)
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad, TrainAlmConfig)


# --- real multi-process runs ------------------------------------------------------------------------------------------
def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _launch(launcher: str, args: list[str]) -> None:
    """Start ``training.train_alm`` in 2 processes through a real launcher; fail with its output's tail."""
    port = _port()
    bin_dir = Path(sys.executable).parent
    prefix = {
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
                     "-m", "training.train_alm"],
        "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE),
                       "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", port,
                       "-m", "training.train_alm"],
        "deepspeed": [str(bin_dir / "deepspeed"), "--num_gpus", "2", "--master_port", port,
                      "--module", "training.train_alm"],
    }[launcher]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.run(prefix + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]


def _args(corpus: Path, tokenizer_dirs: tuple[Path, Path], cache: Path, out: Path, **kw: object) -> list[str]:
    settings = dict(preset="debug", steps=STEPS, max_tokens=1024, lr=3e-3, warmup_steps=2, num_codebooks=2,
                    text_vocab_size=500, log_every=1, eval_every=3, ckpt_every=3, keep_checkpoints=5, num_samples=1,
                    codec=tokenizer_dirs[0], units=tokenizer_dirs[1], cache_dir=cache, **kw)
    return ["--corpus", str(corpus), "--out", str(out), "--no-progress",
            *[a for k, v in settings.items() for a in (f"--{k.replace('_', '-')}", str(v))]]


def _weights(d: Path) -> dict[str, torch.Tensor]:
    return load_file(d / "model.safetensors")


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def _losses(run: Path) -> list[float]:
    trainer = torch.load(run / "checkpoints" / f"step-{STEPS:07d}" / "trainer_state.pt", weights_only=True)
    return [h["loss"] for h in json.loads(trainer["history"]) if "loss" in h]


@pytest.fixture(scope="module")
def plain_reference(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One plain process accumulating 2 micro-batches per step: what 2 data-parallel processes compute together."""
    root = tmp_path_factory.mktemp("dist")
    corpus_args = _args(tiny_corpus, tokenizer_dirs, root / "cache", root / "plain", grad_accum=2, threads=1)
    corpus, out, cfg, _ = parse_args(corpus_args)
    train(corpus, out, cfg, progress=False)
    return root


def test_two_process_zero2_matches_one_process_resumes_after_a_kill_and_exports(
        tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path], plain_reference: Path, tmp_path: Path) -> None:
    root = plain_reference
    ds = tmp_path / "zero2"
    _launch("torchrun", _args(tiny_corpus, tokenizer_dirs, root / "cache", ds, zero_stage=2))
    state = json.loads((ds / "final" / "training_state.json").read_text())
    assert state["engine"] == "deepspeed" and state["processes"] == 2
    fingerprints = state["weights_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]  # both processes hold the same weights
    shards = sorted(p.name for p in (ds / "checkpoints" / f"step-{STEPS:07d}" / "deepspeed").iterdir())
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= set(shards)  # one shard each
    losses = _losses(ds)
    assert len(losses) == STEPS and losses[-1] < losses[0] - 0.2  # it learns
    # data parallel over 2 processes == the plain run accumulating their 2 batches (same stream, same order)
    assert losses == pytest.approx(_losses(root / "plain"), abs=1e-4)
    assert _close(_weights(ds / "final"), _weights(root / "plain" / "final"), atol=1e-5)

    # killed after the step-3 checkpoint; the same command (here through accelerate's launcher) resumes it
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(ds / "checkpoints" / "step-0000003", resumed / "checkpoints" / "step-0000003")
    _launch("accelerate", _args(tiny_corpus, tokenizer_dirs, root / "cache", resumed))  # ZeRO-2 from its config
    assert json.loads((resumed / "final" / "training_state.json").read_text())["train_config"]["zero_stage"] == 2
    assert _close(_weights(resumed / "final"), _weights(ds / "final"), atol=1e-6)

    # the ZeRO checkpoint exports to a release directory alm.load reads
    release = tmp_path / "release"
    result = CliRunner().invoke(app, ["export", str(ds / "checkpoints" / f"step-{STEPS:07d}"), str(release)])
    assert result.exit_code == 0, result.output
    assert json.loads((release / "extra.json").read_text())["weights_from"] == "DeepSpeed ZeRO shards"
    assert _close(_weights(release), _weights(ds / "final"), atol=0)
    import alm

    model = alm.load(release)
    wav = sorted((tiny_corpus / "wavs").rglob("*.wav"))[0]
    assert isinstance(model.transcribe(wav, max_new_tokens=8).text, str)
    # a run directory exports its newest checkpoint; a directory with none is a clear error
    again = CliRunner().invoke(app, ["export", str(ds), str(tmp_path / "release2")])
    assert again.exit_code == 0 and _close(_weights(tmp_path / "release2"), _weights(release), atol=0)
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "nothing"), str(tmp_path / "release3")])
    assert bad.exit_code == 1 and "neither a checkpoint" in bad.output


def test_two_process_zero3_through_the_deepspeed_launcher(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                                                          plain_reference: Path, tmp_path: Path) -> None:
    root = plain_reference
    out = tmp_path / "zero3"
    _launch("deepspeed", _args(tiny_corpus, tokenizer_dirs, root / "cache", out, zero_stage=3))
    # ZeRO-3 partitions the parameters; the saved weights are gathered from both processes and match the plain run
    assert _close(_weights(out / "final"), _weights(root / "plain" / "final"), atol=1e-5)
    release = tmp_path / "release"
    assert CliRunner().invoke(app, ["export", str(out), str(release)]).exit_code == 0
    assert _close(_weights(release), _weights(root / "plain" / "final"), atol=1e-5)
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").iterdir())
