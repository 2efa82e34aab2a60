import itertools
import json
import re

from kimi_core.compaction import (
    PART_WEIGHT,
    Chunk,
    bm25,
    chunks,
    clean,
    collapse_runs,
    compact,
    sha256,
    terms,
)
from kimi_core.tokens import TokenCounter

counter = TokenCounter()


def count(text):
    return counter.count_text(text)


def test_clean_removes_noise_and_keeps_information():
    text = "\x1b[32mPASS\x1b[0m test_a   \n\n\n\n\x1b[31mFAIL\x1b[0m test_b\r\n"
    assert clean(text) == "PASS test_a\n\nFAIL test_b"
    assert clean("fetch 10%\rfetch 55%\rfetch 100%\ndone") == "fetch 100%\ndone"  # what the terminal showed


def test_lines_that_differ_only_in_numbers_are_kept_unless_progress_or_logs():
    files = [f"src/module_{i:04d}.py" for i in range(10)]
    assert collapse_runs(files) == files


def test_clean_compacts_pretty_json_losslessly():
    value = {"files": [{"name": f"f{i}.py", "size": i} for i in range(50)]}
    cleaned = clean(json.dumps(value, indent=2))
    assert json.loads(cleaned) == value and "\n" not in cleaned


def test_runs_of_same_shape_lines_collapse_with_a_count():
    lines = ["start"] + [f"Downloading... {i}%" for i in range(100)] + ["done"]
    assert collapse_runs(lines) == ["start", "Downloading... 0%", "[... 98 similar lines ...]",
                                    "Downloading... 99%", "done"]
    assert collapse_runs(["a", "a", "b"]) == ["a", "a", "b"]  # two is not a run


def test_chunks_cover_every_line_with_about_ten_percent_overlap():
    lines = [f"line {i} with some words in it" for i in range(500)]
    pieces = chunks(lines, 200, [count(line) + 1 for line in lines])
    assert pieces[0].start == 0 and pieces[-1].end == 500
    for a, b in itertools.pairwise(pieces):
        assert b.start < a.end  # overlap
        assert (a.end - b.start) <= 0.2 * (a.end - a.start)
    assert all(c.tokens <= 200 for c in pieces)


def test_bm25_prefers_documents_with_rare_query_terms():
    tf = [{"the": 1, "cat": 1}, {"the": 1, "dog": 1, "segfault": 1}, {"the": 2}]
    s = bm25({"segfault": 1.0, "the": 1.0}, tf, [2, 3, 2])
    assert s[1] == max(s) and s[2] < s[1]


def test_question_terms_keep_names_whole_drop_stopwords_and_weigh_parts_less():
    found = terms("Which tests fail on python3.11 in needle_settings.toml?")
    assert found["python3.11"] == 1.0 and found["needle_settings.toml"] == 1.0
    assert found["needle"] == found["settings"] == PART_WEIGHT
    assert "which" not in found and "on" not in found and "in" not in found


def test_the_chunk_that_defines_a_name_wins_over_those_that_only_use_it():
    uses = [f"    result = compute_checksum(block_{i}) + offset_{i}" for i in range(3000)]
    uses[2200] = "def compute_checksum(block):"
    out = compact("\n".join(uses), 600, "what does compute_checksum do?", count)
    assert "def compute_checksum(block):" in out.text


def test_a_gap_marker_says_how_many_error_and_warning_lines_it_stands_for():
    lines = [f"INFO step {i} ok" for i in range(4000)]
    for i in range(100, 3900, 50):
        lines[i] = f"ERROR step {i} failed to connect"
    lines[2000] = "WARNING disk almost full"
    out = compact("\n".join(lines), 300, "what went wrong?", count)
    assert re.search(r"left out \d+ lines \(about [\d,]+ tokens; error in \d+ lines, fail in \d+ lines(, warn in 1 line)?\)",
                     out.text)


def test_a_gap_marker_in_source_code_names_what_the_left_out_lines_define():
    lines = []
    for i in range(400):
        lines += [f"def handler_{i}(request):", f"    return respond(request, {i})", ""]
    out = compact("\n".join(lines), 300, "what does handler_200 do?", count)
    assert "def handler_200(request):" in out.text
    assert re.search(r"defines handler_\d+, handler_\d+, handler_\d+, handler_\d+, handler_\d+, handler_\d+ "
                     r"and \d+ more\)", out.text)


def listing(n):
    return "\n".join(f"-rw-r--r-- 1 user staff {1000 + i} Jan 1 src/module_{i:05d}/file_{i}.py" for i in range(n))


def test_compaction_fits_the_budget_and_keeps_the_needle_start_and_end():
    lines = listing(6000).split("\n")
    lines[3000] = "Traceback (most recent call last): ValueError: checksum mismatch in payments_ledger.py"
    text = "\n".join(lines)
    out = compact(text, 5000, "why does payments_ledger fail the checksum", count)
    assert out.original_tokens > 80_000 and out.kept_tokens <= 5000 and count(out.text) == out.kept_tokens
    assert "checksum mismatch in payments_ledger.py" in out.text
    assert out.text.startswith(lines[0]) and out.text.rstrip().endswith(lines[-1].rstrip())
    assert f"kimi-proxy restore {sha256(text)[:12]}" in out.text
    assert "Kimi Proxy left out" in out.text and not out.cleaned_only


def test_compaction_is_deterministic():
    text = listing(3000)
    a = compact(text, 3000, "module_01500", count)
    b = compact(text, 3000, "module_01500", TokenCounter().count_text)
    assert a.text == b.text and "module_01500" in a.text


def test_clean_up_alone_is_enough_for_repetitive_output():
    text = "\n".join(f"2026-11-21 10:{i // 60 % 60:02d}:{i % 60:02d} GET /health 200 OK" for i in range(20000))
    text += "\nERROR: db down"
    out = compact(text, 2000, "", count)
    assert out.cleaned_only and "ERROR: db down" in out.text and out.kept_tokens < 100


def test_chunk_is_plain_data():
    assert Chunk(0, 1, "x", 1) == Chunk(0, 1, "x", 1)
