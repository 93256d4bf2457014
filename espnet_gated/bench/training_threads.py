"""The thread benchmark's library: one training step of a recipe's model, timed at a thread count beside
busy processes (``espnet_gated.bin.bench_threads``).

The step (forward, backward, gradient clipping, ESPnet's optimizer) runs on a batch like the recipe's
(random audio and targets; the vocabulary a token list in the OWSM layout); each cell is the median seconds
per step over its rounds. ESPnet is imported only when the step is built (the CLI starts fast).
"""

import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "train.yaml"  # the default recipe's
BUSY_LOOP = "while True: pass"
LANGS, TASKS = ("deu", "fra", "ita", "eng"), ("asr", "st_eng")


def token_list(vocab_size: int) -> List[str]:
    """A token list in the OWSM layout (specials, prefix symbols, pieces, <sos>/<eos>/<sop>)."""
    from espnet_gated.data.tokenizer import HEAD_SYMBOLS, TAIL_SYMBOLS, prefix_symbols

    head = [*HEAD_SYMBOLS, *prefix_symbols(LANGS, TASKS)]
    return head + [f"▁p{i}" for i in range(vocab_size - len(head) - len(TAIL_SYMBOLS))] + list(TAIL_SYMBOLS)


def build_step(config: Path, vocab_size: int, n_utts: int, utt_sec: float, seed: int):
    """The model of ``config`` with ESPnet's optimizer, and a function running one training step."""
    import torch

    from espnet_gated.plugin.tasks import GatedS2TTask

    tokens = token_list(vocab_size)
    args = GatedS2TTask.get_parser().parse_args(["--config", str(config), "--token_list", "unused"])
    args.token_list = tokens
    torch.manual_seed(seed)
    model = GatedS2TTask.build_model(args).train()
    optimizer = GatedS2TTask.build_optimizers(args, model)[0]
    g = torch.Generator().manual_seed(seed)
    lengths = ((0.7 + 0.6 * torch.rand(n_utts, generator=g)) * utt_sec * 16000).long().sort(descending=True).values
    speech = 0.1 * torch.randn(n_utts, int(lengths[0]), generator=g)
    n_pieces = torch.randint(4, 10, (n_utts,), generator=g)
    pieces = torch.randint(len(tokens) // 10, len(tokens) - 3, (n_utts, int(n_pieces.max())), generator=g)
    prefix = torch.tensor([tokens.index(t) for t in ("<deu>", "<asr>", "<notimestamps>")]).expand(n_utts, 3)
    batch = dict(
        speech=speech,
        speech_lengths=lengths,
        text=torch.cat([prefix, pieces], 1),
        text_lengths=n_pieces + 3,
        text_prev=torch.full((n_utts, 1), tokens.index("<na>")),
        text_prev_lengths=torch.ones(n_utts, dtype=torch.long),
        text_ctc=pieces,
        text_ctc_lengths=n_pieces,
    )
    grad_clip = getattr(args, "grad_clip", 5.0)

    def step():
        loss, _, _ = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()

    n_params = sum(p.numel() for p in model.parameters())
    return step, {"params": n_params, "utt_sec": (lengths / 16000).tolist(), "target_pieces": n_pieces.tolist()}


def time_steps(step, threads: int, n_steps: int) -> List[float]:
    import torch

    torch.set_num_threads(threads)
    step()  # warm-up at this thread count
    times = []
    for _ in range(n_steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def start_competitors(n: int) -> List[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    time.sleep(0.3)  # running before anything is measured
    return procs


def stop(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def threads_markdown(report: Dict) -> str:
    meta = report["meta"]
    lines = [
        f"# Training step, torch threads on a busy machine ({meta['date']})",
        "",
        f"{meta['config']}: {meta['params']:,} parameters; batch of {meta['batch']} utterances "
        f"({meta['mean_utt_sec']:.2f} s on average); {meta['cores']} cores in the affinity; torch's own "
        f"thread count {meta['torch_default_threads']}; median of {meta['steps']} steps x {meta['rounds']} rounds. "
        "Cores busy: measured by the rule beside the competitors (other work on the machine included).",
        "",
        "| competitors | cores busy | torch's default: threads | s/step | the rule: threads | s/step | rule speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        d, r = row["torch_default"], row["rule"]
        busy = "/".join(f"{b:.1f}" for b in row["busy_cores"])
        lines.append(
            f"| {row['competitors']} | {busy} | {d['threads']} | {d['s_per_step']:.3f} "
            f"| {'/'.join(map(str, r['threads']))} | {r['s_per_step']:.3f} | {d['s_per_step'] / r['s_per_step']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def run_threads(args) -> Dict:
    """Time the step of ``args.config`` with torch's default threads and the rule's, per ``--competitors``, in
    ``--rounds`` interleaved rounds; returns the report (meta, rows, the batch)."""
    import torch

    from espnet_gated.recipe.threads import AUTO, affinity_cores, busy_cores, choose_threads

    torch_default = torch.get_num_threads()  # before anything sets it
    step, facts = build_step(args.config, args.vocab_size, args.batch, args.utt_sec, args.seed)
    variants = ("torch_default", "rule")
    rows = [{"competitors": k, "busy_cores": [], **{v: {"threads": [], "rounds": []} for v in variants}}
            for k in args.competitors]  # fmt: skip
    for r in range(args.rounds):
        for row in rows:
            procs = start_competitors(row["competitors"])
            try:
                row["busy_cores"].append(busy_cores(affinity_cores()))
                threads = {"torch_default": torch_default, "rule": choose_threads(1, AUTO)[0]}
                for variant in variants if r % 2 == 0 else variants[::-1]:
                    seconds = statistics.median(time_steps(step, threads[variant], args.steps))
                    row[variant]["threads"].append(threads[variant])
                    row[variant]["rounds"].append(seconds)
                    logging.info(f"round {r + 1}/{args.rounds}, {row['competitors']} competitor(s): {variant} "
                                 f"{threads[variant]} thread(s) {seconds:.3f} s/step")  # fmt: skip
            finally:
                stop(procs)
    for row in rows:
        row["torch_default"]["threads"] = torch_default
        for variant in variants:
            row[variant]["s_per_step"] = statistics.median(row[variant]["rounds"])
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "config": str(args.config),
        "params": facts["params"],
        "batch": args.batch,
        "mean_utt_sec": statistics.mean(facts["utt_sec"]),
        "cores": len(affinity_cores()),
        "cpu_count": os.cpu_count(),
        "torch_default_threads": torch_default,
        "steps": args.steps,
        "rounds": args.rounds,
        "nice": os.nice(0),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
    }
    return {"meta": meta, "rows": rows, "batch": facts}
