#!/usr/bin/env python3
"""test_eval.py PART EVAL SMALL BASE MATH500 WORKDIR: tests of specreason-eval (cli/eval.c).

PART is one of:
  server  (extra args: SERVER SMALL_F32 BASE_F32) 3 MATH-500 problems x (base, small, spec t=3,7)
          through a real specreason-server on a free loopback port, --concurrency 2: the same
          records (answers, grades, step counts, texts, steps) as the in-process evaluation of
          the same problems; resume across runs skips what is done.
  e2e     3 MATH-500 problems x (base, small, spec t=3, spec t=7): results.jsonl, summary.json,
          summary.csv and chart.svg are complete and agree; a rerun skips everything (and is much
          faster); a record cut mid-line is redone, and only that one; other settings mean new records.
  gpqa    a 2-problem GPQA CSV, 3 samples: the correct letter varies and the choices are shuffled.
  report  --report on crafted records: accuracy, Wilson interval, mean/median latency, speedup,
          acceptance, latest-record-wins, malformed lines skipped (no models needed).
  bad     bad input exits non-zero with a clear message (no models needed).
Uses the standard library only.
"""
import csv
import fcntl
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

PART, EVAL, SMALL, BASE, MATH500, WORK = sys.argv[1:7]
FAILS = []
SMALL_RUN = ["--budget", "64", "--max-step-tokens", "16", "--max-answer-tokens", "16", "--ctx", "2048",
             "--threads", "1", "--greedy"]
REQUIRED = {"id": str, "mode": str, "sample": int, "seed": int, "settings": str, "kind": str, "truth": str,
            "correct": bool, "latency_ms": (int, float), "tokens": (int, float), "stop": str, "stats": dict,
            "text": str}


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg, flush=True)
    return cond


def run(args, name):
    t0 = time.monotonic()
    p = subprocess.run([EVAL] + args, capture_output=True, text=True, timeout=240)
    dt = time.monotonic() - t0
    print(f"--- {name}: exit {p.returncode}, {dt:.2f} s", flush=True)
    if p.returncode not in (0,) and name.startswith("ok:"):
        print(p.stdout, p.stderr, sep="\n")
    return p, dt


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def records(path):
    out = []
    for i, line in enumerate(lines_of(path)):
        try:
            r = json.loads(line)
        except ValueError as e:
            check(False, f"{path} line {i + 1} is not JSON: {e}")
            continue
        for k, t in REQUIRED.items():
            check(k in r and isinstance(r[k], t), f"{path} line {i + 1}: field {k} missing or not {t}")
        check("threshold" in r and (r["threshold"] is None or isinstance(r["threshold"], (int, float))),
              f"line {i + 1}: threshold")
        check("answer" in r and "extracted" in r, f"line {i + 1}: answer/extracted missing")
        for k in ("judged", "acceptance", "adopted_tokens", "t_total_ms", "score_hist", "sd_drafted"):
            check(k in r.get("stats", {}), f"line {i + 1}: stats.{k} missing")
        out.append(r)
    return out


def key(r):
    return (r["id"], r["mode"], r["threshold"], r["sample"], r["seed"], r["settings"])


def math_ids(n):
    ids = []
    with open(MATH500, encoding="utf-8") as f:
        for line in f:
            ids.append(json.loads(line)["id"])
            if len(ids) == n:
                break
    return ids


def summary_checks(out, recs, groups_expected):
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        sj = json.load(f)
    groups = sj["groups"]
    check([(g["mode"], g["threshold"]) for g in groups] == groups_expected,
          f"summary groups {[(g['mode'], g['threshold']) for g in groups]}")
    for g in groups:
        mine = [r for r in recs if r["mode"] == g["mode"] and r["threshold"] == g["threshold"]]
        check(g["n"] == len(mine), f"{g['mode']} {g['threshold']}: n {g['n']} != {len(mine)} records")
        check(g["correct"] == sum(r["correct"] for r in mine), f"{g['mode']}: correct count")
        if mine:
            mean = sum(r["latency_ms"] for r in mine) / len(mine)
            check(abs(g["mean_latency_ms"] - mean) <= 1e-3 * mean + 0.01, f"{g['mode']}: mean latency")
        if g["mode"] == "spec":
            check(g["acceptance"] is not None and 0 <= g["acceptance"] <= 1, "spec acceptance in [0, 1]")
        else:
            check(g["acceptance"] is None, f"{g['mode']}: acceptance should be null")
        check(g["ci_low"] <= g["accuracy"] <= g["ci_high"], f"{g['mode']}: CI brackets accuracy")
    base = [g for g in groups if g["mode"] == "base"]
    if base:
        check(base[0]["speedup"] == 1, "speedup of base is 1")
    with open(os.path.join(out, "summary.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    check(len(rows) == len(groups), "summary.csv has one row per group")
    for row, g in zip(rows, groups):
        check(row["mode"] == g["mode"] and int(row["n"]) == g["n"] and int(row["correct"]) == g["correct"],
              f"csv row {row} disagrees with json {g}")
        check(abs(float(row["accuracy"]) - g["accuracy"]) < 1e-6, "csv accuracy")
    return sj


def chart_checks(out, groups_expected):
    svg = os.path.join(out, "chart.svg")
    try:
        root = ET.parse(svg).getroot()
    except ET.ParseError as e:
        check(False, f"chart.svg is not well-formed XML: {e}")
        return
    ns = "{http://www.w3.org/2000/svg}"
    check(root.tag == ns + "svg", f"root element {root.tag}")
    pts = [e for e in root.iter(ns + "circle") if e.get("class") == "point"]
    got = [(e.get("data-mode"), e.get("data-threshold")) for e in pts]
    want = [(m, "" if t is None else f"{t:g}") for m, t in groups_expected]
    check(sorted(got) == sorted(want), f"chart points {got} != {want}")
    sweeps = [e for e in root.iter(ns + "polyline") if e.get("class") == "sweep"]
    n_thr = sum(1 for m, t in groups_expected if t is not None)
    check(len(sweeps) == (1 if n_thr >= 2 else 0), f"{len(sweeps)} sweep lines")
    texts = "".join(t.text or "" for t in root.iter(ns + "text"))
    check("latency" in texts and "accuracy" in texts, "axis labels")


def part_e2e():
    out = os.path.join(WORK, "e2e")
    shutil.rmtree(out, ignore_errors=True)
    args = ["--small", SMALL, "--base", BASE, "--data", MATH500, "--limit", "3", "--modes", "base,small,spec",
            "--thresholds", "3,7", "--k", "1", "--out", out] + SMALL_RUN
    groups = [("base", None), ("small", None), ("spec", 3), ("spec", 7)]
    p, t_first = run(args, "ok: first run")
    check(p.returncode == 0, f"first run exit {p.returncode}: {p.stderr}")
    res = os.path.join(out, "results.jsonl")
    recs = records(res)
    check(len(recs) == 12, f"{len(recs)} records, expected 12")
    ids = math_ids(3)
    want = {(i, m, t) for i in ids for m, t in groups}
    check({(r["id"], r["mode"], r["threshold"]) for r in recs} == want, "records cover problems x modes x thresholds")
    check(len({key(r) for r in recs}) == 12, "record keys are unique")
    check(all(r["sample"] == 0 and r["seed"] == 0 and r["kind"] == "math" for r in recs), "sample/seed/kind")
    check(len(re.findall(r"^\[\d+/12\] ", p.stderr, re.M)) == 12, "one progress line per record on stderr")
    check(re.search(r"^spec\s+7\s+3\s", p.stdout, re.M) is not None, f"table row for spec 7:\n{p.stdout}")
    summary_checks(out, recs, [(m, t) for m, t in groups])
    chart_checks(out, groups)
    before = open(res, "rb").read()

    # rerun: everything is skipped, nothing appended, no model loaded
    p, t_second = run(args + ["--json"], "ok: rerun")
    check(p.returncode == 0, f"rerun exit {p.returncode}: {p.stderr}")
    check(open(res, "rb").read() == before, "rerun changed results.jsonl")
    check("12 of 12 records already done" in p.stderr and "skipped" in p.stderr, f"rerun stderr: {p.stderr}")
    try:
        js = json.loads(p.stdout)
        check(js["records"] == {"planned": 12, "skipped": 12, "ran": 0, "failed": 0}, f"records {js['records']}")
        with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
            check(json.load(f) == js, "--json output equals summary.json")
    except ValueError:
        check(False, f"--json output is not JSON: {p.stdout[:200]}")
    check(t_second < t_first / 3, f"rerun {t_second:.2f} s is not much faster than {t_first:.2f} s")

    # resume compatibility: the writer's key fields keep the shape the earlier hand-written writer
    # used, and a store written by another JSON writer (spaces, other key order, thresholds as
    # 3.0, a BOM-less CRLF-free file) still loads: every record is recognised and skipped.
    first = before.split(b"\n", 1)[0].decode()
    check(re.match(r'^\{"id":"[^"]+","mode":"base","threshold":null,"sample":0,"seed":0,"settings":"[0-9a-f]{16}",'
                   r'"kind":"math",', first) is not None, f"record line shape: {first[:160]}")
    check(re.search(r'"threshold":(3|7),"sample"', before.decode()) is not None, "integral thresholds written as 3/7")
    alien = []
    for r in recs:
        r2 = dict(r)
        if r2["threshold"] is not None:
            r2["threshold"] = float(r2["threshold"])
        alien.append(json.dumps(r2, sort_keys=True))
    with open(res, "w", encoding="utf-8") as f:
        f.write("\n".join(alien) + "\n")
    p, _ = run(args + ["--json"], "ok: rerun on a store written by another JSON writer")
    check(p.returncode == 0 and "12 of 12 records already done" in p.stderr, f"foreign store rerun: {p.stderr}")
    with open(res, "wb") as f:
        f.write(before)

    # a crash mid-write: the last line is cut in the middle; exactly that record is redone
    data = before.rstrip(b"\n")
    last_start = data.rfind(b"\n") + 1
    cut_key = key(json.loads(data[last_start:]))
    with open(res, "wb") as f:
        f.write(data[: last_start + (len(data) - last_start) // 2])
    p, _ = run(args + ["--json"], "ok: resume after a cut line")
    check(p.returncode == 0, f"resume exit {p.returncode}: {p.stderr}")
    check("unfinished last line" in p.stderr, f"resume does not mention the cut line: {p.stderr}")
    check("11 of 12 records already done" in p.stderr, f"resume stderr: {p.stderr}")
    recs2 = records(res)
    check(len(recs2) == 12, f"{len(recs2)} records after resume, expected 12")
    check(key(recs2[-1]) == cut_key, "the cut record was redone")
    check({key(r) for r in recs2} == {key(r) for r in recs}, "same keys after resume")
    try:
        check(json.loads(p.stdout)["records"]["ran"] == 1, "exactly one record ran")
    except (ValueError, KeyError):
        check(False, "resume --json output")

    # other settings (budget) are other records
    p, _ = run(["--small", SMALL, "--base", BASE, "--data", MATH500, "--limit", "1", "--modes", "small", "--out", out,
                "--json"] + SMALL_RUN + ["--budget", "48"], "ok: other settings")
    check(p.returncode == 0 and "already done" not in p.stderr, f"other settings: {p.stderr}")
    recs3 = records(res)
    check(len(recs3) == 13 and recs3[-1]["settings"] != recs2[1]["settings"], "a new record with new settings")
    print(f"first run {t_first:.2f} s, rerun {t_second:.2f} s")


def part_gpqa():
    out = os.path.join(WORK, "gpqa")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(WORK, exist_ok=True)
    data = os.path.join(WORK, "gpqa.csv")
    with open(data, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                    "Incorrect Answer 3"])
        w.writerow(["rec1", "Which gas makes up most of the atmosphere?", "Nitrogen", "Oxygen", "Argon",
                    "Carbon dioxide"])
        w.writerow(["rec2", 'Pick the "prime", please,\nfrom these:', "7", "8", "9", "10"])
    p, _ = run(["--small", SMALL, "--data", data, "--modes", "small", "--k", "3", "--out", out] + SMALL_RUN,
               "ok: gpqa")
    check(p.returncode == 0, f"gpqa exit {p.returncode}: {p.stderr}")
    check("identical except for the choice order" in p.stderr, "greedy k>1 note")
    recs = records(os.path.join(out, "results.jsonl"))
    check(len(recs) == 6, f"{len(recs)} gpqa records, expected 6")
    letters, orders = [], set()
    for r in recs:
        check(r["kind"] == "gpqa", "kind gpqa")
        order = r.get("choice_order")
        check(isinstance(order, list) and sorted(order) == [0, 1, 2, 3], f"choice_order {order}")
        check(r["truth"] in "ABCD" and len(r["truth"]) == 1, f"truth {r['truth']}")
        if isinstance(order, list) and len(order) == 4:
            check(order["ABCD".index(r["truth"])] == 0, "the truth letter holds the correct answer")
            orders.add(tuple(order))
        check(r["extracted"] is None or r["extracted"] in list("ABCD"), "extracted is a letter or null")
        check(r["correct"] == (r["extracted"] == r["truth"]), "correct == (extracted == truth)")
        letters.append(r["truth"])
    check(len(set(letters)) > 1, f"the correct letter never varies: {letters}")
    check(len(orders) > 1 and any(o != (0, 1, 2, 3) for o in orders), f"choices are not shuffled: {orders}")
    by_id = {}
    for r in recs:
        by_id.setdefault(r["id"], set()).add(tuple(r["choice_order"]))
    check(sorted(by_id) == ["rec1", "rec2"], f"ids {sorted(by_id)}")
    check(any(len(v) > 1 for v in by_id.values()), "samples of a problem see different orders")
    # a context too small for the budget: every run fails, the harness gives up after 5
    shutil.rmtree(out + "-ctx", ignore_errors=True)
    p, _ = run(["--small", SMALL, "--data", data, "--modes", "small", "--k", "3", "--out", out + "-ctx"] + SMALL_RUN
               + ["--ctx", "256", "--budget", "4096"], "context too small")
    check(p.returncode == 1 and "context" in p.stderr and "giving up: the first 5 runs failed" in p.stderr,
          f"[context too small] {p.returncode} {p.stderr}")


def wilson(k, n, z=1.959963984540054):
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z / d * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, c - h) if k else 0.0, min(1.0, c + h) if k < n else 1.0


def part_report():
    out = os.path.join(WORK, "report")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    ids = math_ids(3)
    lines = []

    def rec(i, mode, thr, s, correct, lat, tok, judged=0, small=0, settings="aaaa"):
        lines.append(json.dumps({"id": ids[i], "mode": mode, "threshold": thr, "sample": s, "seed": s,
                                 "settings": settings, "correct": correct, "latency_ms": lat, "tokens": tok,
                                 "stats": {"judged": judged, "steps_small": small}}))

    base_lat = [1000, 3000, 2000, 8000, 4000, 6000]
    spec_lat = [500, 700, 100, 900, 300, 1100]
    base_ok = [True, True, False, True, True, False]
    spec_ok = [False, False, False, True, False, False]
    j = 0
    for i in range(3):
        for s in range(2):
            rec(i, "spec", 7, s, not spec_ok[j], 99999, 1)  # stale: replaced by the line below
            rec(i, "base", None, s, base_ok[j], base_lat[j], 100 + j)
            rec(i, "spec", 7, s, spec_ok[j], spec_lat[j], 50, judged=10, small=j, settings="bbbb")
            j += 1
    lines.insert(3, "{not json")
    lines.append(json.dumps({"id": ids[0], "mode": "base", "threshold": None, "sample": 5, "seed": 5,
                             "settings": "aaaa", "correct": True, "latency_ms": 1, "tokens": 1}))  # not in k=2
    with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n" + '{"id": "cut')  # and an unfinished last line
    p, _ = run(["--report", "--data", MATH500, "--limit", "3", "--k", "2", "--modes", "base,spec,small", "--thresholds",
                "7", "--out", out, "--json"], "ok: report")
    check(p.returncode == 0, f"report exit {p.returncode}: {p.stderr}")
    check("line 4 ignored" in p.stderr, f"malformed line warning: {p.stderr}")
    try:
        sj = json.loads(p.stdout)
    except ValueError:
        check(False, f"report --json: {p.stdout[:300]}")
        return
    g = {x["mode"]: x for x in sj["groups"]}
    b, sp, sm = g["base"], g["spec"], g["small"]
    close = lambda a, e: a is not None and abs(a - e) <= 1e-5 * max(1.0, abs(e))
    check(b["n"] == 6 and b["correct"] == 4 and close(b["accuracy"], 4 / 6), f"base counts {b}")
    lo, hi = wilson(4, 6)
    check(close(b["ci_low"], lo) and close(b["ci_high"], hi), f"base Wilson {b['ci_low']}, {b['ci_high']} != {lo}, {hi}")
    check(close(b["mean_latency_ms"], 4000) and close(b["median_latency_ms"], 3500), f"base latency {b}")
    check(close(b["mean_tokens"], 102.5), "base mean tokens")
    check(sp["n"] == 6 and sp["correct"] == 1, f"spec counts {sp} (latest record must win)")
    lo, hi = wilson(1, 6)
    check(close(sp["ci_low"], lo) and close(sp["ci_high"], hi), "spec Wilson")
    check(close(sp["median_latency_ms"], 600) and close(sp["mean_latency_ms"], 600), f"spec latency {sp}")
    check(close(sp["speedup"], 4000 / 600) and close(b["speedup"], 1.0), "speedup")
    check(close(sp["acceptance"], 15 / 60), f"pooled acceptance {sp['acceptance']}")
    check(sm["n"] == 0 and sm["accuracy"] is None and sm["speedup"] is None and sm["ci_low"] is None, f"empty {sm}")
    # Wilson at the edges: 0 of 6 and 6 of 6
    lines2 = [json.dumps({"id": ids[i], "mode": "small", "threshold": None, "sample": 0, "seed": 0, "settings": "x",
                          "correct": False, "latency_ms": 10 * (i + 1), "tokens": 1}) for i in range(3)]
    with open(os.path.join(out, "results.jsonl"), "a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(lines2) + "\n")
    p, _ = run(["--report", "--data", MATH500, "--limit", "3", "--modes", "small", "--out", out, "--json"],
               "ok: report edge")
    try:
        s0 = json.loads(p.stdout)["groups"][0]
        check(s0["ci_low"] == 0 and close(s0["ci_high"], wilson(0, 3)[1]) and s0["speedup"] is None
              and close(s0["median_latency_ms"], 20), f"edge {s0}")
    except (ValueError, IndexError, KeyError):
        check(False, f"report edge output {p.stdout[:300]} {p.stderr}")
    p, _ = run(["--report", "--data", MATH500, "--limit", "3", "--modes", "small", "--out", out], "ok: report table")
    check(re.search(r"^small\s+-\s+3\s+0\.0%\s+\[0\.0, 56\.1\]\s+0\.02\s+0\.02\s+1\s+-\s+-$", p.stdout, re.M)
          is not None, f"table:\n{p.stdout}")
    chart_checks(out, [("small", None)])


def part_bad():
    os.makedirs(WORK, exist_ok=True)
    bad_jsonl = os.path.join(WORK, "bad.jsonl")
    with open(bad_jsonl, "w", encoding="utf-8") as f:
        f.write('{"id": "a", "problem": "1+1", "answer": "2"}\n{"id": "b", "problem": \n')
    dup_csv = os.path.join(WORK, "dup.csv")
    with open(dup_csv, "w", encoding="utf-8") as f:
        f.write("Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
                "x,q1,a,b,c,d\nx,q2,a,b,c,d\n")
    out = os.path.join(WORK, "bad-out")
    shutil.rmtree(out, ignore_errors=True)
    m = ["--small", os.path.join(WORK, "missing-small.gguf"), "--base", os.path.join(WORK, "missing-base.gguf")]
    d = ["--data", MATH500, "--out", out]
    cases = [
        ("missing data file", 1, r"missing\.jsonl", m + ["--data", os.path.join(WORK, "missing.jsonl"), "--out", out]),
        ("malformed JSONL line", 1, r"bad\.jsonl line 2", m + ["--data", bad_jsonl, "--out", out]),
        ("duplicate problem id", 1, r"the id 'x' is used by two problems", m + ["--data", dup_csv, "--out", out]),
        ("unknown id", 2, r"no problem with id 'nope'", m + d + ["--ids", "test/algebra/2584.json,nope"]),
        ("empty id", 2, r"empty item", m + d + ["--ids", "a,,b"]),
        ("unknown mode", 2, r"unknown mode 'turbo'", m + d + ["--modes", "base,turbo"]),
        ("mode twice", 2, r"'spec' is listed twice", m + d + ["--modes", "spec,spec"]),
        ("threshold range", 2, r"'11' is not a number in \[0, 10\]", m + d + ["--thresholds", "3,11"]),
        ("threshold twice", 2, r"7 is listed twice", m + d + ["--thresholds", "7,7.0"]),
        ("k zero", 2, r"--k expects an integer", m + d + ["--k", "0"]),
        ("no --data", 2, r"--data FILE is required", m),
        ("no --small", 2, r"need --small", ["--base", "x"] + d + ["--modes", "spec"]),
        ("unknown option", 2, r"unknown option '--bogus'", m + d + ["--bogus"]),
        ("server unreachable", 1, r"127\.0\.0\.1:1/health", ["--server", "http://127.0.0.1:1"] + d + ["--limit", "1"]),
        ("concurrency without --server", 2, r"--concurrency needs --server", m + d + ["--concurrency", "2"]),
        ("seed too large", 2, r"below 2\^63", m + d + ["--seed", "18446744073709551615"]),
        ("template without {problem}", 2, r"no \{problem\}", m + d + ["--prompt-template", "hello"]),
        ("missing model", 1, r"missing-(small|base)\.gguf", m + d + ["--limit", "1"]),
        ("report without results", 1, r"cannot read .*results\.jsonl",
         ["--report", "--data", MATH500, "--out", os.path.join(WORK, "empty-out")]),
    ]
    for name, want_rc, pat, args in cases:
        p, _ = run(args, name)
        check(p.returncode == want_rc, f"[{name}] exit {p.returncode}, expected {want_rc}: {p.stderr}")
        check(re.search(pat, p.stderr) is not None, f"[{name}] stderr does not match /{pat}/: {p.stderr}")
        check(p.stdout == "", f"[{name}] wrote to stdout: {p.stdout}")
    # a second evaluation on a directory in use
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p, _ = run(m + d + ["--limit", "1"], "directory in use")
        check(p.returncode == 1 and "in use" in p.stderr, f"[in use] {p.returncode} {p.stderr}")
    p, _ = run(["--help"], "help")
    check(p.returncode == 0 and "--thresholds" in p.stdout and "--concurrency" in p.stdout, "--help")


def part_server():
    server, small, base = sys.argv[7:10]
    run_opts = ["--budget", "64", "--max-step-tokens", "16", "--max-answer-tokens", "16", "--greedy",
                "--policy", "always"]
    common = ["--data", MATH500, "--modes", "base,small,spec", "--thresholds", "3,7", "--save-steps"] + run_opts
    local = os.path.join(WORK, "server-local")
    remote = os.path.join(WORK, "server-remote")
    for d in (local, remote):
        shutil.rmtree(d, ignore_errors=True)
    # F32 models: batched and single-row products round alike, so batched == alone exactly.
    p, _ = run(["--small", small, "--base", base, "--ctx", "2048", "--threads", "1", "--limit", "3", "--out", local]
               + common, "ok: in-process")
    check(p.returncode == 0, f"in-process exit {p.returncode}: {p.stderr}")
    srv = subprocess.Popen([server, "--small", small, "--base", base, "--port", "0", "--parallel", "2", "--ctx", "2048",
                            "--threads", "1", "--quiet"] + run_opts, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           text=True)
    try:
        url = None
        deadline = time.time() + 120
        while time.time() < deadline and url is None:
            line = srv.stderr.readline()
            if not line:
                break
            m = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
        check(url is not None, "server did not start")
        if url is None:
            return
        # first two problems, then all three: the second run resumes (8 of 12 done)
        args = ["--server", url, "--concurrency", "2", "--out", remote] + common
        p, _ = run(args + ["--limit", "2"], "ok: through the server, 2 problems")
        check(p.returncode == 0, f"server eval exit {p.returncode}: {p.stderr}")
        check(len(records(os.path.join(remote, "results.jsonl"))) == 8, "8 records after the first server run")
        p, _ = run(args + ["--limit", "3", "--json"], "ok: through the server, resumed")
        check(p.returncode == 0, f"resumed exit {p.returncode}: {p.stderr}")
        check("8 of 12 records already done" in p.stderr, f"resume stderr: {p.stderr}")
        try:
            check(json.loads(p.stdout)["records"] == {"planned": 12, "skipped": 8, "ran": 4, "failed": 0},
                  f"resumed records: {p.stdout[:300]}")
        except (ValueError, KeyError):
            check(False, f"resumed --json: {p.stdout[:300]}")
        p, _ = run(args + ["--limit", "3"], "ok: through the server, nothing left")
        check(p.returncode == 0 and "12 of 12 records already done" in p.stderr, f"rerun: {p.stderr}")
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait(timeout=120)
        except subprocess.TimeoutExpired:
            srv.kill()
            rc = "timeout"
        check(rc == 0, f"server exit status after SIGTERM: {rc}")
    loc = {(r["id"], r["mode"], r["threshold"]): r for r in records(os.path.join(local, "results.jsonl"))}
    rem = {(r["id"], r["mode"], r["threshold"]): r for r in records(os.path.join(remote, "results.jsonl"))}
    check(len(loc) == 12 and set(loc) == set(rem), f"same record keys: {sorted(set(loc) ^ set(rem))}")
    stat_keys = ["steps", "steps_small", "steps_base_reject", "steps_base_forced", "judged", "score_hist",
                 "adopted_tokens", "adopted_small", "adopted_base", "answer_tokens", "rejected_tokens"]
    for k in sorted(set(loc) & set(rem)):
        a, b = loc[k], rem[k]
        for f in ("answer", "extracted", "correct", "truth", "stop", "text", "tokens", "kind", "sample", "seed"):
            check(a[f] == b[f], f"{k}: {f} differs: {a[f]!r} vs {b[f]!r}")
        for f in stat_keys:
            check(a["stats"][f] == b["stats"][f], f"{k}: stats.{f} differs: {a['stats'][f]} vs {b['stats'][f]}")
        check(set(a["stats"]) == set(b["stats"]), f"{k}: stats fields differ")
        check([(x["author"], x["text"], x["score"]) for x in a["result"]["steps"]] ==
              [(x["author"], x["text"], x["score"]) for x in b["result"]["steps"]], f"{k}: steps differ")
        check(a["backend"] == "in-process" and b["backend"] == "specreason-server", f"{k}: backend names")
    with open(os.path.join(remote, "summary.json"), encoding="utf-8") as f:
        sr_ = json.load(f)
    with open(os.path.join(local, "summary.json"), encoding="utf-8") as f:
        sl = json.load(f)
    check([(g["mode"], g["threshold"], g["n"], g["correct"]) for g in sr_["groups"]] ==
          [(g["mode"], g["threshold"], g["n"], g["correct"]) for g in sl["groups"]], "same summary groups")


{"e2e": part_e2e, "gpqa": part_gpqa, "report": part_report, "bad": part_bad, "server": part_server}[PART]()
if FAILS:
    print(f"{len(FAILS)} check(s) failed")
    sys.exit(1)
print(f"test_eval {PART}: all checks passed")
