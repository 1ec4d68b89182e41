"""The text collection: index-texts (idempotent, resumable by content), search --texts by
image or text, the match_text expert the planner calls, and bad collection files as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensorium import Settings
from sensorium.agent import Agent
from sensorium.tools.errors import IndexUnavailableError
from sensorium.tools.text_index import TextIndex
from sensorium.tools.vector_index import open_client

CAPTIONS = Path(__file__).resolve().parents[1] / "evals" / "data" / "photos_captions.jsonl"


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """The built-in photos' reference captions as a collection file (one entry per caption)."""
    path = tmp_path / "captions.jsonl"
    with path.open("w") as out:
        for line in CAPTIONS.read_text().splitlines():
            row = json.loads(line)
            for n, text in enumerate(row["references"], 1):
                out.write(
                    json.dumps({"id": f"{row['id']}-{n}", "text": text, "image": row["image"]})
                    + "\n"
                )
    return path


def test_index_then_find_the_cats_caption_by_its_photo(
    cli, collection: Path, chelsea: Path
) -> None:  # type: ignore[no-untyped-def]
    first = json.loads(cli("index-texts", str(collection), "--json").out)
    assert first["added"] == first["total"] > 100 and first["unchanged"] == 0
    again = json.loads(cli("index-texts", str(collection), "--json").out)
    assert (again["added"], again["replaced"], again["unchanged"]) == (0, 0, first["total"])
    hits = json.loads(cli("search", "--texts", "--image", str(chelsea), "--json").out)
    assert "cat" in hits[0]["text"].lower() and hits[0]["metadata"]["image"] == "chelsea.png"
    assert hits[0]["score"] >= hits[1]["score"] and hits[0]["id"].startswith("pc")
    by_text = json.loads(cli("search", "--texts", "a cup of coffee", "-k", "2", "--json").out)
    assert all(hit["metadata"]["image"] == "coffee.png" for hit in by_text)
    # A changed entry is embedded again and replaced; the rest stay.
    lines = collection.read_text().splitlines()
    changed = json.loads(lines[0]) | {"text": "An astronaut smiling in front of a flag."}
    collection.write_text("\n".join([json.dumps(changed), *lines[1:]]) + "\n")
    third = json.loads(cli("index-texts", str(collection), "--json").out)
    assert (third["added"], third["replaced"]) == (0, 1)


def test_a_plain_text_file_is_one_entry_per_line(tmp_path: Path, settings: Settings) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a tabby cat asleep\n\nan espresso on a red saucer\n")
    agent = Agent(settings, chat_model=None)
    report = agent.index_texts([notes])
    assert (report.added, report.total) == (2, 2)
    assert agent.search_texts("coffee", k=1)[0].text == "an espresso on a red saucer"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no entries (the file is empty)"),
        ('{"id": 1, "text": "a cat"}\n{not json\n', ":2: not a JSON object"),
        ('{"id": 1, "caption": "a cat"}\n', ":1: field 'text' is missing or empty"),
        ('["a cat"]\n', ":1: each line must be a JSON object"),
    ],
)
def test_a_bad_collection_file_names_the_file_and_line(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    result = cli("index-texts", str(bad))
    assert result.code == 1 and "bad.jsonl" in result.err and message in result.err
    assert result.err.strip().count("\n") == 0


def test_a_collection_made_by_another_encoder_is_refused(tmp_path: Path) -> None:
    client = open_client(tmp_path / "index")
    TextIndex(client, "encoder-a", 4)
    with pytest.raises(IndexUnavailableError, match="built by encoder 'encoder-a'"):
        TextIndex(client, "encoder-a", 8)  # same name, other space: refused, not mixed


def test_the_agent_picks_a_caption_for_a_picture(
    settings: Settings, collection: Path, chelsea: Path
) -> None:
    agent = Agent(settings, chat_model=None)
    missing = agent.ask("Which of my captions fits this picture?", [chelsea])
    assert "run `sensorium index-texts FILE` first" in str(missing.evidence[0].error)
    agent.index_texts([collection])
    result = agent.ask("Which of my captions fits this picture?", [chelsea])
    assert [call.tool for call in result.plan.calls] == ["match_text"]
    hits = result.evidence[0].payload["hits"]
    assert hits[0]["metadata"]["image"] == "chelsea.png" and hits[0]["score"] > 0.5
    assert result.answer == hits[0]["text"] and hits[0]["text"] in result.reply


def test_the_image_to_text_suite_scores_each_photos_own_captions(
    tmp_path: Path, settings: Settings
) -> None:
    from sensorium.evals import builtin_suites, load_suite, run_suite

    suite = load_suite(builtin_suites()["photos-text-retrieval"])
    outcome = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None)
    scores = outcome.results.metrics["retrieval"]
    assert outcome.results.errors == 0 and outcome.results.samples == 24
    assert scores["mrr"] > 0.3  # a photo's own caption is usually near the top (lite: 0.42)
    assert scores["recall@10"] >= scores["recall@5"] >= scores["recall@1"]


def test_a_relevant_text_the_collection_lacks_is_a_suite_error(tmp_path: Path) -> None:
    from sensorium.evals import SuiteError, load_suite

    (tmp_path / "texts.jsonl").write_text('{"id": "t1", "text": "a cat"}\n')
    (tmp_path / "rows.jsonl").write_text('{"id": "r1", "query": "cat", "relevant": ["t2"]}\n')
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ntask: retrieval\ndata: rows.jsonl\ntexts: texts.jsonl\n")
    with pytest.raises(
        SuiteError, match=r"rows\.jsonl:1: field 'relevant': text id 't2' is not in"
    ):
        load_suite(suite)
    suite.write_text("name: s\ntask: vqa\ndata: rows.jsonl\ntexts: texts.jsonl\n")
    with pytest.raises(SuiteError, match="field 'texts' applies to task 'retrieval'"):
        load_suite(suite)
