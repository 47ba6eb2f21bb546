#!/usr/bin/env python3
"""test_report.py PART EVAL SMALL BASE MATH500 WORKDIR: the HTML report of specreason-eval (--html).

PART is one of:
  crafted  --report --html on crafted records (no model): valid HTML, every problem present with
           its traces side by side, steps marked by author with the judge score and the rejected
           draft under the rewrite, the latest record wins, <script> and other markup in model and
           problem text shown as text, no script or event attribute anywhere; unwritable --html
           path is a clear error.
  e2e      a real run with --save-steps on the generated models: the report shows every problem
           and, for every record, exactly its steps in order with their authors.
Uses the standard library only.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import htmlcheck  # noqa: E402

PART, EVAL, SMALL, BASE, MATH500, WORK = sys.argv[1:7]
FAILS = []
EVIL = "<script>alert('x')</script>"
EVIL_DRAFT = "</details></li><img src=x onerror=alert(1)> & \"quoted\""


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg, flush=True)
    return cond


def run(args, name):
    p = subprocess.run([EVAL] + args, capture_output=True, text=True, timeout=600)
    print(f"--- {name}: exit {p.returncode}", flush=True)
    if p.returncode != 0:
        print(p.stdout[-2000:], p.stderr[-2000:], sep="\n")
    return p


def load_report(path):
    with open(path, encoding="utf-8") as f:
        html = f.read()
    root, problems = htmlcheck.parse(html)
    check(not problems, f"{path} is not well-formed HTML: {problems[:5]}")
    check(not root.find_all("script"), "the report has no <script> element")
    for n in root.iter():
        for k in n.attrs:
            check(not k.lower().startswith("on"), f"event attribute {k} on <{n.tag}>")
        check(n.tag not in ("img", "iframe", "object"), f"unexpected <{n.tag}> (escaping failed?)")
    check("http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html,
          "no external resources")
    return html, root


def runs_of(problem_node):
    return problem_node.find_all("article", "run")


def steps_of(run_node):
    return run_node.find_all("li", "step")


def part_crafted():
    out = os.path.join(WORK, "crafted")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    data = os.path.join(out, "data.jsonl")
    problems = [
        {"id": "p1", "problem": "What is 1+1? " + EVIL, "answer": "2"},
        {"id": "p<2> & 'two'", "problem": "Compute <b>2+2</b>.", "answer": "4"},
        {"id": "p3", "problem": "What is 3+3?", "answer": "6"},
    ]
    with open(data, "w", encoding="utf-8") as f:
        for p in problems:
            f.write(json.dumps(p) + "\n")
    ids = [p["id"] for p in problems]

    def step(author, text, score=None, draft=None, draft_score=None):
        s = {"author": author, "score": score, "tokens": len(text.split()), "text": text, "draft_tokens": 3,
             "t_draft_ms": 1, "t_judge_ms": 1, "t_base_ms": 1, "t_sync_ms": 0}
        if draft is not None:
            s["rejected_draft"] = draft
            s["draft_score"] = draft_score
        return s

    def rec(pid, mode, thr, correct, steps, answer, extracted, settings="s1", latency=1000.0):
        judged = sum(1 for s in steps if s["author"] in ("small", "base-reject"))
        small = sum(1 for s in steps if s["author"] == "small")
        hist = [0] * 10
        for s in steps:
            if s["author"] == "small":
                hist[int(s["score"])] += 1
            if s["author"] == "base-reject":
                hist[int(s["draft_score"])] += 1
        return {"id": pid, "mode": mode, "threshold": thr, "sample": 0, "seed": 0, "settings": settings,
                "kind": "math", "truth": "2", "answer": answer, "extracted": extracted, "correct": correct,
                "latency_ms": latency, "tokens": 10, "stop": "answer", "backend": "local",
                "stats": {"judged": judged, "steps_small": small, "acceptance": small / judged if judged else 0,
                          "steps_base_reject": judged - small, "steps_base_forced": 0, "score_hist": hist},
                "text": "\n\n".join(s["text"] for s in steps),
                "result": {"steps": steps, "answer": answer, "stop": "answer"}}

    spec_steps = [
        step("small", "First, " + EVIL + " is just text.", score=8),
        step("base-reject", "Then 1+1 = 2.", draft=EVIL_DRAFT, draft_score=2),
        step("small", "So the answer is \\boxed{3}.\x07", score=9),
    ]
    base_steps = [step("base-forced", "1+1 = 2."), step("base-forced", "\\boxed{2}")]
    lines = [
        # stale: replaced by the later p1 spec record
        json.dumps(rec(ids[0], "spec", 7, True, [step("small", "STALE STEP", score=9)], "stale", "2")),
        json.dumps(rec(ids[0], "base", None, True, base_steps, "The answer is 2 <i>", "2")),
        json.dumps(rec(ids[0], "spec", 7, False, spec_steps, "\\boxed{3} " + EVIL, "3", settings="s2")),
        json.dumps(rec(ids[1], "base", None, True, [step("base-forced", "2+2=4 <br>")], "4", "4")),
        json.dumps(rec(ids[1], "spec", 7, True, [step("small", "2+2=4", score=7)], "4", "4")),
        "{not json",
        # p3: spec only, recorded without --save-steps (no result object)
        json.dumps({k: v for k, v in rec(ids[2], "spec", 7, True, [step("small", "six " + EVIL, score=9)],
                                        "6", "6").items() if k != "result"}),
        # not shown: another problem id, another threshold
        json.dumps(rec("other", "spec", 7, True, [step("small", "x", score=9)], "x", "x")),
        json.dumps(rec(ids[0], "spec", 3, True, [step("small", "t3", score=9)], "x", "x")),
    ]
    with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    html_path = os.path.join(out, "report.html")
    p = run(["--report", "--data", data, "--modes", "base,spec", "--thresholds", "7", "--out", out,
             "--html", html_path], "ok: report --html")
    if not check(p.returncode == 0, f"report exit {p.returncode}: {p.stderr}"):
        return
    html, root = load_report(html_path)
    check(EVIL not in html and "<img" not in html, "raw markup from records does not reach the HTML")
    # summary table: one row per group
    summ = root.by_id("summary")
    rows = summ.find("tbody").find_all("tr") if summ else []
    check([r.find("td").text() for r in rows] == ["base", "spec"], f"summary rows {[r.text() for r in rows]}")
    check(root.by_id("chart") is not None and root.by_id("chart").find("svg") is not None, "chart inlined")
    pts = [c for c in root.by_id("chart").find_all("circle") if "point" in c.classes()]
    check(len(pts) == 2, f"{len(pts)} chart points")
    # every problem, in data order, with its id as text and as data-id
    secs = root.find_all("section", "problem")
    check([s.attrs.get("data-id") for s in secs] == ids, f"problems {[s.attrs.get('data-id') for s in secs]}")
    for s, pid in zip(secs, ids):
        check(s.find("h3").text() == pid, f"heading of {pid!r}")
        check(len(runs_of(s)) == 2, f"{pid}: two runs side by side (base, spec t=7)")
    check("STALE STEP" not in html and "other" not in [s.attrs.get("data-id") for s in secs],
          "latest record wins; other problems and thresholds are not shown")
    # p1: problem text escaped; spec run marked step by step
    p1 = secs[0]
    check(EVIL in p1.find("details").text(), "problem text with <script> shown as text")
    base_run, spec_run = runs_of(p1)
    check([st.attrs.get("data-author") for st in steps_of(base_run)] == ["base-forced", "base-forced"],
          "base run: forced steps")
    sp = steps_of(spec_run)
    check([st.attrs.get("data-author") for st in sp] == ["small", "base-reject", "small"],
          f"spec run authors {[st.attrs.get('data-author') for st in sp]}")
    check(all(f"a-{st.attrs.get('data-author')}" in st.classes() for st in sp), "author classes")
    if len(sp) == 3:
        check(sp[0].find("p", "text").text() == "First, " + EVIL + " is just text.", "<script> in a step is text")
        check(sp[0].find("span", "score") is not None and sp[0].find("span", "score").text() == "8",
              "judge score of an accepted step")
        d = sp[1].find("details")
        check(d is not None and d.find("p", "text").text() == EVIL_DRAFT, "rejected draft under the rewrite")
        check(d is not None and "2" in d.find("summary").text(), "rejected draft's judge score")
        check(sp[2].find("p", "text").text().endswith("\ufffd"), "control character replaced")
    check("wrong" in spec_run.classes() and "ok" in base_run.classes(), "verdict classes")
    ans = spec_run.find("div", "answer-box")
    check(ans is not None and EVIL in ans.text(), "answer set apart, escaped")
    # overview: p1 disagrees (base right, spec wrong), p2 agrees
    ov = root.by_id("overview")
    trs = ov.find("tbody").find_all("tr") if ov else []
    check([t.classes() for t in trs] == [["disagree"], ["agree"], ["agree"]], f"overview {[t.classes() for t in trs]}")
    check("disagree" in secs[0].classes() and "disagree" not in secs[1].classes(), "problem disagree class")
    # p3: no base record; spec recorded without steps
    b3, s3 = runs_of(secs[2])
    check("none" in b3.classes() and "no record" in b3.text(), "missing record shown as such")
    check(not steps_of(s3) and s3.find("pre", "text") is not None and EVIL in s3.find("pre", "text").text(),
          "record without steps shows its text, escaped")
    check(root.by_id("only-disagree") is not None, "disagreement filter")

    # bad --html path: clear error, exit 1, summary files still written
    p = run(["--report", "--data", data, "--modes", "base,spec", "--out", out, "--html",
             os.path.join(out, "no", "such", "dir", "r.html")], "bad: unwritable --html")
    check(p.returncode == 1 and "cannot write" in p.stderr, f"unwritable --html: {p.returncode} {p.stderr}")
    # a missing summary for a bare directory is an error too (reported by the eval's own --report first)
    p = run(["--help"], "ok: help")
    check("--html" in p.stdout, "--help lists --html")


def part_e2e():
    out = os.path.join(WORK, "e2e")
    shutil.rmtree(out, ignore_errors=True)
    html_path = os.path.join(out, "report.html")
    args = ["--small", SMALL, "--base", BASE, "--data", MATH500, "--limit", "2", "--modes", "base,small,spec",
            "--thresholds", "3,9", "--out", out, "--save-steps", "--html", html_path,
            "--budget", "48", "--max-step-tokens", "12", "--max-answer-tokens", "8", "--ctx", "2048",
            "--threads", "1", "--greedy", "-q"]
    p = run(args, "ok: eval --save-steps --html")
    if not check(p.returncode == 0, f"eval exit {p.returncode}: {p.stderr}"):
        return
    recs = [json.loads(x) for x in open(os.path.join(out, "results.jsonl"), encoding="utf-8")]
    check(len(recs) == 8, f"{len(recs)} records")
    html, root = load_report(html_path)
    ids = []
    with open(MATH500, encoding="utf-8") as f:
        for line in f:
            ids.append(json.loads(line)["id"])
            if len(ids) == 2:
                break
    secs = root.find_all("section", "problem")
    check([s.attrs.get("data-id") for s in secs] == ids, "every problem present, in order")
    groups = [("base", None), ("small", None), ("spec", 3), ("spec", 9)]
    n_steps = 0
    for s, pid in zip(secs, ids):
        runs = runs_of(s)
        check(len(runs) == 4, f"{pid}: 4 runs side by side")
        for (mode, thr), r in zip(groups, runs):
            mine = [x for x in recs if x["id"] == pid and x["mode"] == mode and x["threshold"] == thr]
            if not check(len(mine) == 1, f"{pid} {mode} {thr}: one record"):
                continue
            want = [st["author"] for st in mine[0]["result"]["steps"]]
            got = [st.attrs.get("data-author") for st in steps_of(r)]
            check(got == want, f"{pid} {mode} {thr}: steps {got} != {want}")
            texts = [st.find("p", "text").text() for st in steps_of(r)]
            check(texts == [st["text"] for st in mine[0]["result"]["steps"]], f"{pid} {mode} {thr}: step texts")
            for st, li in zip(mine[0]["result"]["steps"], steps_of(r)):
                if "rejected_draft" in st:
                    d = li.find("details")
                    check(d is not None and d.find("p", "text").text() == st["rejected_draft"], "rejected draft")
            check(("ok" if mine[0]["correct"] else "wrong") in r.classes(), f"{pid} {mode}: verdict")
            n_steps += len(want)
    check(n_steps > 0, "some steps were rendered")
    authors = {st.attrs.get("data-author") for st in root.find_all("li", "step")}
    print(f"report: {len(secs)} problems, {n_steps} steps, authors {sorted(authors)}")
    check({"small-only", "base-forced"} <= authors, f"authors seen {authors}")


{"crafted": part_crafted, "e2e": part_e2e}[PART]()
if FAILS:
    print(f"{len(FAILS)} check(s) failed")
    sys.exit(1)
print("all checks passed")
