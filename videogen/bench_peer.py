"""`make bench-peer`: our tiny LM train step against a plain PyTorch (CPU, eager) peer of the same step.

    python -m videogen.bench_peer --torch-python /work/scratch/torchenv/bin/python

The peer runs in a separate Python that has torch (a scratch environment, not a project dependency)::

    python3 -m venv /work/scratch/torchenv && /work/scratch/torchenv/bin/pip install torch==2.13.0 numpy

What is compared, in one run:

* ours -- the ``LM train`` row of ``make bench`` (videogen/bench.py :class:`~videogen.bench.LMTrainStep`: the
  ``experiments/lm_world.py:tiny`` model on the tiny tokenizer's 5x8x8 grid, next-token, batch 16 of 32 text
  + 320 video tokens, the jitted train step with caption drop, loss, AdamW, EMA), with the issue's rotary-only
  positions (:data:`PEER_POSITIONS`: no learned (t, h, w) table, one shared ladder; the tiny config's
  learned table is one add and its per-axis ladders the same rotary work, so the step's cost is the same);
* peer -- the same step written plainly in PyTorch (:data:`PEER_SOURCE`, written to a temp dir and run by
  ``--torch-python``): 4 layers, d 128, 4 heads, SwiGLU 384, RMSNorm, qk-norm, the same (t, h, w) rotary,
  causal + key-padding mask, the 2 x 32 bit-group head (summed group embeddings in, two 32-way softmaxes
  out), global-norm clipping, AdamW (decay on matrices), EMA, caption drop. Same shapes and FLOPs.

The two are timed back to back: ``--rounds`` rounds, each ``--steps`` steps of one then of the other
(the order alternates), after warm-up (compile) steps; each step is timed alone (synchronised). On a
shared machine the load changes by the minute, so the ratio of the two within the same run is the
figure to read, not either time alone. Also printed: the matmul peak measured in this run
(``videogen.bench.matmul_peak``, the fastest of its repeats, measured before and after the steps; the
higher is used) and each step's MFU against it (FLOPs per step from ``videogen.lm.model.flops_per_token``,
the same count for both: the peer computes the same model).

Exit status 2, with one line on how to make the scratch environment, when ``--torch-python`` is missing
or has no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from videogen import bench as B
from videogen import errors
from videogen import lm as lm_lib
from videogen.training.config import apply_overrides

# The positions the peer implements (the step: RoPE only), put before the --set overrides.
PEER_POSITIONS = ["model.video_pos_emb=False", "model.rope_video=shared"]

SCRATCH_HINT = (
    "bench_peer needs --torch-python: a Python with torch, outside the project, e.g. "
    "`python3 -m venv /work/scratch/torchenv && /work/scratch/torchenv/bin/pip install torch==2.13.0 "
    "numpy`, then --torch-python /work/scratch/torchenv/bin/python"
)

# The peer: one file, run as `python peer.py SPEC_JSON`; line protocol on stdin/stdout (one JSON per line).
PEER_SOURCE = r'''
import json, math, sys, time
import torch
import torch.nn.functional as F

spec = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(int(spec["threads"]) if spec.get("threads") else torch.get_num_threads())
L, d, H, layers, mlp = spec["text_len"], spec["d_model"], spec["num_heads"], spec["num_layers"], spec["mlp_dim"]
t, h, w = spec["grid"]
n = t * h * w
B, V_text, G, gs = spec["batch"], spec["text_vocab"], spec["num_groups"], spec["group_size"]
g_bits = gs.bit_length() - 1
Dh = d // H
eps, theta = 1e-6, spec["rope_theta"]


def normal(*shape, std):
    return torch.nn.Parameter(torch.randn(*shape) * std)


class RMSNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.scale


def rope(x, cos, sin):
    """Rotates pairs (k, k + Dh/2) of x [B, S, H, Dh]: x * [cos, cos] + roll(x) * [-sin, sin], with the tables
    pre-broadcast to x's shape (contiguous: 4x faster fwd+bwd than chunk/cat with broadcasting here)."""
    return x * cos + x.roll(Dh // 2, dims=-1) * sin


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
        self.wq, self.wk, self.wv = (normal(d, H * Dh, std=d ** -0.5) for _ in range(3))
        self.wo = normal(H * Dh, d, std=(H * Dh * 2 * layers) ** -0.5)
        self.q_norm, self.k_norm = RMSNorm(Dh), RMSNorm(Dh)
        self.w_gate, self.w_up = normal(d, mlp, std=d ** -0.5), normal(d, mlp, std=d ** -0.5)
        self.w_down = normal(mlp, d, std=(mlp * 2 * layers) ** -0.5)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        y = self.attn_norm(x)
        q = self.q_norm((y @ self.wq).view(b, s, H, Dh))
        k = self.k_norm((y @ self.wk).view(b, s, H, Dh))
        v = (y @ self.wv).view(b, s, H, Dh)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        x = x + o.transpose(1, 2).reshape(b, s, H * Dh) @ self.wo
        y = self.mlp_norm(x)
        return x + (F.silu(y @ self.w_gate) * (y @ self.w_up)) @ self.w_down


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.text = normal(V_text, d, std=1.0)
        self.video = normal(G * gs, d, std=G ** -0.5)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(layers))
        self.final_norm = RMSNorm(d)
        self.head = normal(d, G * gs, std=d ** -0.5)

    def forward(self, text, video_in, cos, sin, mask):
        # text [B, L] ids; video_in [B, n - 1] codes (next-token: the last code is never an input)
        groups = (video_in[..., None] >> (g_bits * torch.arange(G))) & (gs - 1)  # [B, n-1, G]
        e_video = F.embedding(groups + gs * torch.arange(G), self.video).sum(-2)
        x = torch.cat([F.embedding(text, self.text), e_video], dim=1)
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        return (self.final_norm(x) @ self.head).view(x.shape[0], x.shape[1], G, gs)


model = Model()
params = list(model.parameters())
ema = [p.detach().clone() for p in params]
decay = [p for p in params if p.ndim > 1]
no_decay = [p for p in params if p.ndim <= 1]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec["weight_decay"]},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=1e-4, betas=(spec["b1"], spec["b2"]), eps=1e-8)

# Positions: text i -> (i, i, i); video (t, h, w) -> (L + t, L + h, L + w); rotary pair k turns with axis k % 3.
S = L + n - 1
ti, hi, wi = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
pos = torch.cat([torch.arange(L)[:, None].expand(L, 3),
                 torch.stack([ti.flatten(), hi.flatten(), wi.flatten()], -1) + L])[:S].float()  # [S, 3]
half = Dh // 2
kk = torch.arange(half)
ang = pos[:, kk % 3] * theta ** (-2.0 * kk / Dh)  # [S, half]
cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :].expand(B, S, H, Dh).contiguous()
sin = torch.cat([-ang.sin(), ang.sin()], -1)[None, :, None, :].expand(B, S, H, Dh).contiguous()
causal = torch.ones(S, S, dtype=torch.bool).tril()

gen = torch.Generator().manual_seed(0)
text_ids = torch.randint(1, V_text, (B, L), generator=gen)
codes = torch.randint(0, gs ** G, (B, n), generator=gen)
step_no = 0


def train_step():
    global step_no
    drop = torch.rand(B) < spec["drop_prob"]
    text = torch.where(drop[:, None], torch.zeros_like(text_ids), text_ids)
    tokens_pad = torch.cat([text, torch.ones(B, n - 1, dtype=torch.long)], dim=1)  # video keys are never PAD
    key_ok = (tokens_pad != 0) | (torch.arange(S) == 0)
    mask = causal[None, None] & key_ok[:, None, None, :]
    logits = model(text, codes[:, :-1], cos, sin, mask)[:, L - 1:]  # [B, n, G, gs]
    target = (codes[..., None] >> (g_bits * torch.arange(G))) & (gs - 1)
    logp = logits.log_softmax(-1)
    nll = -logp.gather(-1, target[..., None])[..., 0].sum(-1)  # [B, n]
    loss = nll.mean()
    with torch.no_grad():
        correct = (logits.argmax(-1) == target).all(-1).float().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(params, spec["grad_clip"])
    opt.step()
    with torch.no_grad():
        dec = min(spec["ema_decay"], (1.0 + step_no) / (10.0 + step_no))
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - dec)
    step_no += 1
    return float(loss.detach()), float(correct), float(gnorm)


for _ in range(int(spec["warmup"])):
    train_step()
print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "params": sum(p.numel() for p in params)}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
        break
    times, loss = [], None
    for _ in range(int(cmd[1])):
        t0 = time.perf_counter()
        loss = train_step()[0]
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "loss": loss}), flush=True)
'''


def _has_torch(python: str | None) -> bool:
    if not python:
        return False
    try:
        r = subprocess.run([python, "-c", "import torch"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


class _Peer:
    """The PyTorch peer in its own process: ``run(k)`` -> the k step times it measured."""

    def __init__(self, python: str, spec: dict, workdir: Path):
        src = workdir / "peer.py"
        src.write_text(PEER_SOURCE)
        self.proc = subprocess.Popen(
            [python, str(src), json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the torch peer exited (status {self.proc.wait()}); see its stderr above.")
        return json.loads(line)

    def run(self, k: int) -> list[float]:
        self.proc.stdin.write(f"run {k}\n")
        self.proc.stdin.flush()
        return self._read()["times"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def _ours(lm_overrides: list[str]):
    """(LMTrainStep, cfg, run_once) for the bench's tiny LM row on the CPU, and its tokenizer grid."""
    dev = jax.devices("cpu")[0]
    tok_cfg = B.tokenizer_config(False, False)
    lm_cfg = B.lm_config(False, False)
    lm_cfg.data.resolution = tok_cfg.data.resolution  # as videogen.bench.run_platform: the tokenizer's grid
    lm_cfg.data.num_frames = tok_cfg.data.num_frames
    if lm_overrides:
        apply_overrides(lm_cfg, lm_overrides)
    grid, codebook = B.tokenizer_grid(tok_cfg)
    with jax.default_device(dev):
        lm = B.LMTrainStep(dev, lm_cfg, grid, codebook)
        run_once, cfg = lm.runner("next_token")
    return dev, lm, cfg, run_once


def _peer_spec(lm, cfg, warmup: int, threads: int | None) -> dict:
    t = lm.tcfg
    if (
        t.head != "bitgroups"
        or t.num_kv_heads != t.num_heads
        or t.text_loss
        or t.video_pos_emb
        or t.rope_video != "shared"
        or t.text_bidirectional
        or not t.qk_norm
    ):
        raise errors.UsageError(
            f"--set gives a model the peer does not implement ({t}); the peer is the tiny step with "
            "multi-head attention, the bit-group head, qk-norm and rotary-only positions: drop that --set."
        )
    o = cfg.optim
    return {
        "text_len": t.max_text_len,
        "d_model": t.d_model,
        "num_heads": t.num_heads,
        "num_layers": t.num_layers,
        "mlp_dim": t.mlp_dim,
        "grid": list(t.video_grid),
        "batch": int(cfg.batch_size),
        "text_vocab": t.text_vocab_size,
        "num_groups": t.num_groups,
        "group_size": t.group_size,
        "rope_theta": t.rope_theta,
        "weight_decay": float(o.weight_decay),
        "b1": float(o.b1),
        "b2": float(o.b2),
        "grad_clip": float(o.grad_clip),
        "ema_decay": float(cfg.ema_decay),
        "drop_prob": float(cfg.text.drop_prob),
        "warmup": warmup,
        "threads": threads,
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run(
    torch_python: str, *, rounds: int, steps: int, warmup: int, threads: int | None, lm_overrides: list[str]
) -> dict:
    load_start = _load()
    dev, lm, cfg, ours_once = _ours(lm_overrides)
    peak_n, peak_repeats = 2048, 10  # as `make bench` measures it on the CPU
    with jax.default_device(dev):
        peaks = [B.matmul_peak(dev, n=peak_n, dtype="float32", repeats=peak_repeats)]
    with tempfile.TemporaryDirectory(prefix="bench_peer_") as tmp:
        peer = _Peer(torch_python, _peer_spec(lm, cfg, warmup, threads), Path(tmp))
        try:
            t0 = time.perf_counter()
            for _ in range(warmup):  # compile + warm caches
                jax.block_until_ready(ours_once())
            compile_s = time.perf_counter() - t0
            ours: list[list[float]] = []
            theirs: list[list[float]] = []

            def ours_round():
                ts = []
                for _ in range(steps):
                    t1 = time.perf_counter()
                    jax.block_until_ready(ours_once())
                    ts.append(time.perf_counter() - t1)
                ours.append(ts)

            for r in range(rounds):
                if r % 2 == 0:
                    ours_round()
                    theirs.append(peer.run(steps))
                else:
                    theirs.append(peer.run(steps))
                    ours_round()
        finally:
            peer.close()
    with jax.default_device(dev):
        peaks.append(B.matmul_peak(dev, n=peak_n, dtype="float32", repeats=peak_repeats))
    peak = max(peaks)
    flops_step = lm_lib.lm_throughput(cfg, lm.tcfg, 1, 1.0, None)["tflops_per_sec"] * 1e12
    tokens_step = lm_lib.lm_throughput(cfg, lm.tcfg, 1, 1.0, None)["tokens_per_sec"]

    def summary(per_round):
        flat = [x for r in per_round for x in r]
        med = statistics.median(flat)
        return {
            "median_s": med,
            "min_s": min(flat),
            "max_s": max(flat),
            "steps": len(flat),
            "tokens_per_s": tokens_step / med,
            "mfu": flops_step / med / peak,
            "rounds": per_round,
        }

    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_start": load_start,
        "load_end": _load(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "torch": peer.info.get("torch"),
        "torch_threads": peer.info.get("threads"),
        "peer_params": peer.info.get("params"),
        "ours_params": int(sum(x.size for x in jax.tree.leaves(lm.state["params"]))),
        "matmul_peak_flops": peak,
        "matmul_peaks": peaks,
        "flops_per_step": flops_step,
        "tokens_per_step": tokens_step,
        "compile_and_warmup_s": compile_s,
        "ours": summary(ours),
        "peer": summary(theirs),
        "rounds": rounds,
        "steps_per_round": steps,
        "lm_overrides": lm_overrides,
    }
    # Paired per round: the two medians of one round saw nearly the same load.
    res["ratio_median"] = res["ours"]["median_s"] / res["peer"]["median_s"]
    res["ratio_paired"] = statistics.median(
        statistics.median(a) / statistics.median(b) for a, b in zip(ours, theirs)
    )
    return res


def format_table(res: dict) -> str:
    lines = [
        f"matmul peak (measured this run, float32 2048^3, best of {len(res['matmul_peaks'])}x10): "
        f"{res['matmul_peak_flops'] / 1e9:.1f} GFLOP/s; {res['flops_per_step'] / 1e9:.2f} GFLOP and "
        f"{res['tokens_per_step']:.0f} tokens per step",
        "| step | median s | min s | tokens/s | ours/peer (median; paired) | MFU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, key in (
        ("ours (JAX, `make bench` LM row)", "ours"),
        (f"peer (PyTorch {res['torch']} eager, {res['torch_threads']} threads)", "peer"),
    ):
        r = res[key]
        ratio = f"{res['ratio_median']:.2f}; {res['ratio_paired']:.2f}" if key == "ours" else "1"
        lines.append(
            f"| {name} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['tokens_per_s']:.0f} | {ratio} | "
            f"{r['mfu']:.1%} |"
        )
    lines.append(
        f"load average {res['load_start']} (start) -> {res['load_end']} (end), {res['cpus']} CPUs; "
        f"{res['rounds']} rounds x {res['steps_per_round']} steps each, interleaved"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m videogen.bench_peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--torch-python", default=None, help="a Python with torch (scratch env, not a dependency)")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds (order alternates)")
    p.add_argument("--steps", type=int, default=3, help="steps of each side per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each side first (compile, caches)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    p.add_argument(
        "--set",
        dest="lm_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of our LM config after the peer's positions (e.g. model.remat=dots)",
    )
    args = p.parse_args(argv)
    overrides = PEER_POSITIONS + args.lm_overrides
    with errors.reported("python -m videogen.bench_peer"):
        apply_overrides(B.lm_config(False, False), overrides)  # a bad --set is said before anything runs
        if not _has_torch(args.torch_python):
            print(SCRATCH_HINT, file=sys.stderr)
            return 2
        res = run(
            args.torch_python,
            rounds=args.rounds,
            steps=args.steps,
            warmup=args.warmup,
            threads=args.threads,
            lm_overrides=overrides,
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(
        f"python -m videogen.bench_peer, {res['date']}, jax {res['jax']}, torch {res['torch']}; params ours "
        f"{res['ours_params']:,} / peer {res['peer_params']:,}"
    )
    print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
