"""scripts/report end to end on the committed fixtures, and its handling of bad inputs."""

import csv
import json
import os
import shutil
import subprocess
import tempfile
import unittest
from html.parser import HTMLParser

import _paths

REPORT = os.path.join(_paths.SCRIPTS, "report")


def run_report(*args):
    p = subprocess.run([REPORT, *args], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def read_lines(name):
    with open(_paths.fixture(name)) as f:
        return f.read().splitlines(keepends=True)


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="attnbench-report-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertFails(self, rc, err, *needles):
        self.assertEqual(rc, 2, err)
        self.assertNotIn("Traceback", err)
        for n in needles:
            self.assertIn(n, err)


class RenderFixture(unittest.TestCase):
    """One full rendering of run_a.jsonl, inspected by several tests."""

    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="attnbench-report-test-")
        # PNG only here, to keep the suite quick; the weights test renders SVG too.
        cls.rc, cls.stdout, cls.stderr = run_report(_paths.fixture("run_a.jsonl"), "--out",
                                                    cls.out, "--no-svg")
        with open(os.path.join(cls.out, "report.md"), encoding="utf-8") as f:
            cls.md = f.read()
        with open(os.path.join(cls.out, "index.html"), encoding="utf-8") as f:
            cls.html = f.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, True)

    def csv_rows(self, name):
        with open(os.path.join(self.out, name), newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def test_exit_status_and_no_warnings(self):
        self.assertEqual(self.rc, 0, self.stderr)
        self.assertEqual(self.stderr, "")

    def test_plots_exist(self):
        plots = os.listdir(os.path.join(self.out, "plots"))
        pngs = [p for p in plots if p.endswith(".png")]
        for kind in ("overview", "scaling-window", "scaling-exact", "pareto-n4096-clustered",
                     "gflops", "threads"):
            self.assertTrue(any(p.startswith(kind) for p in pngs), kind)
        for p in pngs:
            with open(os.path.join(self.out, "plots", p), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            self.assertIn("plots/" + p, self.md)

    def test_context_on_the_first_page(self):
        first = self.md[: self.md.index("## Complexity exponents")]
        for text in ("Fixture CPU @ 2.0GHz", "GNU 12.2.0", "0123456789ab", "a1b2c3d4",
                     "1 thread: 100, 2 threads: 190"):
            self.assertIn(text, first)

    def test_failures_listed_with_reasons(self):
        section = self.md[self.md.index("## Configurations not measured"):]
        for status, reason in (("skipped", "exceeds the memory budget"),
                               ("error", "expected a divisor of n_k=1024"),
                               ("timeout", "exceeded the time limit of 60 s"),
                               ("crash", "killed by signal 11 (SIGSEGV)"),
                               ("oom", "out of memory"),
                               ("unsupported", "linformer has no causal form")):
            self.assertRegex(section, r"\| %s \|.*%s" % (status, reason.replace("(", r"\(")
                                                         .replace(")", r"\)")))

    def test_exponent_table_and_csv(self):
        self.assertIn("| window | width=64 | sparse | O(n w d) | 1.000 [1.000, 1.000] | 1.0000 | "
                      "256–4096 (5) |", self.md)
        rows = {(r["variant"], r["workload"], r["threads"]): r
                for r in self.csv_rows("exponents.csv")}
        self.assertAlmostEqual(float(rows[("full", "gaussian", "1")]["time_exponent"]), 2.0, 9)
        self.assertAlmostEqual(float(rows[("flash", "gaussian", "1")]["memory_exponent"]), 0.0, 9)
        self.assertAlmostEqual(float(rows[("performer", "gaussian", "1")]["time_r2"]), 1.0, 9)

    def test_crossover_table_and_csv(self):
        self.assertRegex(self.md, r"\| window \| width=64 \| 2000 \(between 1024 and 2048\) \| "
                                  r"1000 \(between 512 and 1024\) \| none in range")
        rows = self.csv_rows("crossovers.csv")
        perf = [r for r in rows if r["variant"] == "performer" and r["metric"] == "time"
                and r["baseline"] == "full"][0]
        self.assertEqual(perf["kind"], "extrapolated")
        self.assertEqual(perf["extrapolated"], "True")
        self.assertAlmostEqual(float(perf["crossover_n"]), 20000, delta=0.02)

    def test_pareto_csv(self):
        rows = [r for r in self.csv_rows("pareto.csv") if r["workload"] == "clustered"]
        front = sorted(json.loads(r["spec_params"]).get("width", r["variant"])
                       for r in rows if r["time_frontier"] == "True" and r["variant"] == "window")
        self.assertEqual(front, [64, 128, 256])
        self.assertEqual(sorted(r["variant"] for r in rows if r["memory_frontier"] == "False"),
                         ["full", "window"])

    def test_records_csv_keeps_every_record(self):
        rows = self.csv_rows("records.csv")
        self.assertEqual(len(rows), 40)
        self.assertEqual(sum(r["status"] != "ok" for r in rows), 6)

    def test_weights_not_recorded(self):
        self.assertIn("Not recorded: no record carries a `weights` field", self.md)

    def test_html_is_well_formed_enough(self):
        class Check(HTMLParser):
            def __init__(self):
                super().__init__()
                self.stack, self.imgs = [], 0

            def handle_starttag(self, tag, attrs):
                if tag == "img":
                    self.imgs += 1
                elif tag not in ("meta", "br"):
                    self.stack.append(tag)

            def handle_endtag(self, tag):
                assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
                self.stack.pop()

        c = Check()
        c.feed(self.html)
        self.assertEqual(c.stack, [])
        self.assertGreater(c.imgs, 0)

    def test_html_and_markdown_show_the_same_figures(self):
        self.assertEqual(self.html.count("<img "), self.md.count("!["))


class Weights(Tmp):
    def test_heat_map_exact_next_to_variant(self):
        rc, out, err = run_report(_paths.fixture("weights.jsonl"), "--out", self.tmp)
        self.assertEqual(rc, 0, err)
        plots = os.listdir(os.path.join(self.tmp, "plots"))
        self.assertTrue(any(p.startswith("weights-window") for p in plots), plots)
        for p in plots:  # every figure as PNG and SVG
            other = p[:-4] + (".svg" if p.endswith(".png") else ".png")
            self.assertIn(other, plots)
        svg = [p for p in plots if p.endswith(".svg")][0]
        with open(os.path.join(self.tmp, "plots", svg)) as f:
            self.assertIn("<svg", f.read(2000))
        with open(os.path.join(self.tmp, "report.md")) as f:
            md = f.read()
        self.assertNotIn("Not recorded", md)
        self.assertIn("attention weights: window width=3", md)


class Notes(Tmp):
    def test_notes_follow_the_context(self):
        notes = self.write("notes.md", "# What the figures show\n\n## Sparse\n\nWindow wins "
                                       "from `n = 2000`.\nStill the same paragraph.\n")
        out = os.path.join(self.tmp, "out")
        rc, _, err = run_report(_paths.fixture("weights.jsonl"), "--out", out, "--no-svg",
                                "--notes", notes)
        self.assertEqual(rc, 0, err)
        with open(os.path.join(out, "report.md")) as f:
            md = f.read()
        self.assertLess(md.index("## Run context"), md.index("## What the figures show"))
        self.assertLess(md.index("### Sparse"), md.index("## Complexity exponents"))
        self.assertIn("Window wins from `n = 2000`. Still the same paragraph.", md)
        with open(os.path.join(out, "index.html")) as f:
            self.assertIn("<code>n = 2000</code>", f.read())

    def test_missing_notes(self):
        rc, _, err = run_report(_paths.fixture("weights.jsonl"), "--out", self.tmp, "--notes",
                                os.path.join(self.tmp, "none.md"))
        self.assertFails(rc, err, "cannot read the notes")


class BadInputs(Tmp):
    def test_empty_file(self):
        path = self.write("empty.jsonl", "")
        rc, _, err = run_report(path, "--out", self.tmp)
        self.assertFails(rc, err, "empty.jsonl: empty file")

    def test_missing_file(self):
        rc, _, err = run_report(os.path.join(self.tmp, "nope.jsonl"), "--out", self.tmp)
        self.assertFails(rc, err, "nope.jsonl: no such file")

    def test_unknown_schema_version(self):
        lines = read_lines("weights.jsonl")
        lines[0] = lines[0].replace('"schema_version":1', '"schema_version":7')
        path = self.write("v7.jsonl", "".join(lines))
        rc, _, err = run_report(path, "--out", self.tmp)
        self.assertFails(rc, err, "v7.jsonl:1: unknown schema version 7 (this script reads "
                                  "version 1)")

    def test_malformed_json_in_the_middle(self):
        lines = read_lines("weights.jsonl")
        lines[1] = lines[1][:50] + "\n"
        path = self.write("mid.jsonl", "".join(lines))
        rc, _, err = run_report(path, "--out", self.tmp)
        self.assertFails(rc, err, "mid.jsonl:2: malformed JSON")

    def test_truncated_last_line_is_skipped_with_a_warning(self):
        text = "".join(read_lines("weights.jsonl"))
        path = self.write("trunc.jsonl", text[:-300])  # cut inside the last record
        rc, _, err = run_report(path, "--out", self.tmp, "--no-svg")
        self.assertEqual(rc, 0, err)
        self.assertIn("trunc.jsonl:3: truncated last line (no final newline), skipped", err)
        self.assertNotIn("Traceback", err)
        with open(os.path.join(self.tmp, "report.md")) as f:
            self.assertIn("line 3 not read: truncated last line", f.read())

    def test_wrong_field_type(self):
        lines = read_lines("weights.jsonl")
        rec = json.loads(lines[1])
        rec["time"]["median"] = "fast"
        lines[1] = json.dumps(rec) + "\n"
        path = self.write("type.jsonl", "".join(lines))
        rc, _, err = run_report(path, "--out", self.tmp)
        self.assertFails(rc, err, "type.jsonl:2: field 'time.median': expected a number")

    def test_first_line_must_be_the_context(self):
        lines = read_lines("weights.jsonl")
        path = self.write("noctx.jsonl", "".join(lines[1:]))
        rc, _, err = run_report(path, "--out", self.tmp)
        self.assertFails(rc, err, "noctx.jsonl:1: the first line must be the run context")

    def test_concatenated_files(self):
        lines = read_lines("weights.jsonl")
        path = self.write("cat.jsonl", "".join(lines + lines))
        rc, _, err = run_report(path, "--out", self.tmp)
        self.assertFails(rc, err, "cat.jsonl:4: a second context line")

    def test_not_text(self):
        path = os.path.join(self.tmp, "bin.jsonl")
        with open(path, "wb") as f:
            f.write(b"\x7fELF\x02\x01\x01\x00\xff\xfe")
        rc, _, err = run_report(path, "--out", self.tmp)
        self.assertFails(rc, err, "bin.jsonl: not UTF-8 text")

    def test_machines_mixed_are_labelled(self):
        lines = read_lines("weights.jsonl")
        other = [l.replace("a1b2c3d4", "ffff0000").replace("Fixture CPU", "Other CPU")
                 for l in lines]
        a = self.write("a.jsonl", "".join(lines))
        b = self.write("b.jsonl", "".join(other))
        out = os.path.join(self.tmp, "out")
        rc, _, err = run_report(a, b, "--out", out, "--no-svg")
        self.assertEqual(rc, 0, err)
        self.assertIn("results from 2 machines (a1b2c3d4, ffff0000)", err)
        with open(os.path.join(out, "report.md")) as f:
            md = f.read()
        self.assertIn("Results from 2 machines (`a1b2c3d4`, `ffff0000`)", md)
        self.assertIn("machine a1b2c3d4", md)
        self.assertIn("machine ffff0000", md)


if __name__ == "__main__":
    unittest.main()
