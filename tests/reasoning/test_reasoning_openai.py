"""The openai backend against a REAL local HTTP server, driven by the real ``openai`` client."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
from reasoning_fakes import ATTRIBUTES_JSON, MALFORMED, FakeChatServer, solid, write_class_dir

from dexter.reasoning import REPORT_SECTIONS, ReasoningError, make_backend, reason_about_class

KEY = "sk-test-SECRET-4f9a1c77e2"
KEY_ENV = "DEXTER_TEST_LLM_KEY"


@pytest.fixture
def server():
    with FakeChatServer(slow_s=1.0) as s:
        yield s


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return KEY_ENV


@pytest.fixture
def class_dir(tmp_path):
    blue, green = (40, 80, 170), (90, 130, 50)
    return write_class_dir(tmp_path / "dexter", 0, "circle", ["water", "lake"],
                           [[solid(blue, seed=i) for i in range(3)], [solid(green, seed=9)]])


def backend(server, tmp_path, **kw):
    settings = dict(base_url=server.base_url, vlm="test-vlm", llm="test-llm", api_key_env=KEY_ENV, timeout_s=0.4,
                    max_retries=3, concurrency=3, cache_dir=tmp_path / "cache")
    settings.update(kw)
    return make_backend("openai", **settings)


def test_round_trip_captions_report_attributes(server, key_env, class_dir, tmp_path):
    out = tmp_path / "out"
    b = backend(server, tmp_path)
    result = reason_about_class(class_dir, out, b)
    b.close()

    # captions: one VLM request per frame, image as a PNG data URI of exactly the frame's bytes
    caps = [r for r in server.requests if r["kind"] == "caption"]
    assert len(caps) == 4
    frames = sorted(p.relative_to(class_dir).as_posix() for p in class_dir.glob("run_*/frames/*.png"))
    sent = []
    for r in caps:
        assert r["body"]["model"] == "test-vlm"
        assert r["headers"]["authorization"] == f"Bearer {KEY}"  # the key from the env var is what is sent
        image = [p for m in r["body"]["messages"] if isinstance(m["content"], list) for p in m["content"]
                 if p["type"] == "image_url"][0]["image_url"]["url"]
        assert image.startswith("data:image/png;base64,")
        sent.append(base64.b64decode(image.split(",", 1)[1]))
    assert sorted(sent) == sorted((class_dir / f).read_bytes() for f in frames)
    for r in server.requests:  # paper settings on every request
        body = r["body"]
        assert (body["temperature"], body["top_p"]) == (0.2, 1.0)
        assert body["frequency_penalty"] == 0 and body["presence_penalty"] == 0

    captions = json.loads((out / "captions.json").read_text())
    assert sorted(captions) == frames
    assert set(captions.values()) == {"A red circle floating on blue water with small waves."}
    assert result.captions == captions

    report = (out / "report.md").read_text()
    for section in REPORT_SECTIONS:
        assert f"## {section}" in report
    assert "test-llm" in report and "test-vlm" in report
    report_req = [r for r in server.requests if r["kind"] == "report"][0]["body"]
    user = report_req["messages"][-1]["content"]
    assert "circle" in user and "water" in user and user.count("A red circle floating") == 4

    attrs = json.loads((out / "attributes.json").read_text())
    assert attrs == {
        "class_name": "circle",
        "attributes": ["water", "blue waves"],  # validated, lower-cased, class name dropped
        "rationale": attrs["rationale"],
        "keywords": ["water", "lake"],
        "written_by": b.written_by,
        "captions_dropped": 0,
        "verdict": "biased", "alternatives": {}, "effects": [],  # no counterfactual test without a generator
    }
    assert attrs["rationale"].startswith("UNVERIFIED") and attrs["rationale"].endswith("Water dominates every image.")
    att_req = [r for r in server.requests if r["kind"] == "attributes"][0]["body"]
    assert att_req["response_format"] == {"type": "json_object"}
    assert "Bias hypothesis" in att_req["messages"][-1]["content"]  # built from the report too


def test_second_run_is_served_from_cache_with_zero_requests(server, key_env, class_dir, tmp_path):
    b = backend(server, tmp_path)
    first = reason_about_class(class_dir, tmp_path / "out1", b)
    b.close()
    n = server.count()
    assert n == 6  # 4 captions + report + attributes

    b2 = backend(server, tmp_path)  # a fresh client, same cache folder: what a rerun of the stage does
    second = reason_about_class(class_dir, tmp_path / "out2", b2)
    b2.close()
    assert server.count() == n
    assert b2.chat.requests == 0 and b2.chat.cache_hits == 6
    assert second == first


def test_cache_key_changes_with_model_and_image(server, key_env, class_dir, tmp_path):
    b = backend(server, tmp_path)
    reason_about_class(class_dir, tmp_path / "out1", b)
    b.close()
    n = server.count("caption")
    frame = next(class_dir.glob("run_1/frames/*.png"))
    from PIL import Image

    Image.fromarray(solid((200, 200, 30), seed=3)).save(frame)  # one frame changes
    b2 = backend(server, tmp_path)
    reason_about_class(class_dir, tmp_path / "out2", b2)
    b2.close()
    assert server.count("caption") == n + 1  # only the changed frame is captioned again
    b3 = backend(server, tmp_path, vlm="other-vlm")
    reason_about_class(class_dir, tmp_path / "out3", b3)
    b3.close()
    assert server.count("caption") == n + 1 + 4


def test_api_key_is_written_nowhere(server, key_env, class_dir, tmp_path):
    server.fail("report", "500")
    b = backend(server, tmp_path)
    reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert server.count() == 7  # the key was used (and retried with)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any("cache" in p.parts for p in files) and (tmp_path / "out" / "attributes.json").is_file()
    for p in files:
        data = p.read_bytes()
        assert KEY.encode() not in data, p
        assert base64.b64encode(KEY.encode()) not in data, p


@pytest.mark.parametrize("fault", ["429", "500", "drop", "slow"])
def test_transient_faults_are_retried(server, key_env, class_dir, tmp_path, fault):
    server.fail("caption", fault)
    server.fail("report", fault)
    b = backend(server, tmp_path)
    t0 = time.monotonic()
    result = reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert server.count("caption") == 5 and server.count("report") == 2
    assert len(result.captions) == 4 and result.attributes.attributes == ["water", "blue waves"]
    assert time.monotonic() - t0 < 8


def test_persistent_rate_limit_is_reported_clearly(server, key_env, class_dir, tmp_path):
    server.fail("caption", *["429"] * 50)
    b = backend(server, tmp_path, max_retries=2, concurrency=1)
    with pytest.raises(ReasoningError, match=r"HTTP 429 after 3 attempts.*Rate limit"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert not (tmp_path / "out" / "attributes.json").exists()


def test_timeout_is_reported_clearly(server, key_env, class_dir, tmp_path):
    server.fail("caption", *["slow"] * 10)
    b = backend(server, tmp_path, max_retries=1, concurrency=1, timeout_s=0.2)
    with pytest.raises(ReasoningError, match=r"test-vlm.*did not answer within 0.2 s \(2 attempts\)"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()


def test_bad_request_says_it_was_sent_once(server, key_env, class_dir, tmp_path):
    """A 400 is never retried: the error must not claim retries that did not happen."""
    server.fail("caption", "400")
    b = backend(server, tmp_path, max_retries=5, concurrency=1)
    with pytest.raises(ReasoningError, match=r"HTTP 400 after 1 attempt: Invalid value") as info:
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert "retries" not in str(info.value)


def test_default_timeout_and_retries_bound_a_hung_request_to_about_two_minutes():
    import inspect

    from dexter.reasoning.openai_backend import OpenAIBackend
    from stages.params.reasoning import ReasoningSection

    section = ReasoningSection()
    backoff = sum(min(0.5 * 2**k, 8.0) for k in range(section.max_retries))  # the openai client's schedule
    assert (section.max_retries + 1) * section.timeout_s + backoff <= 125
    defaults = inspect.signature(OpenAIBackend).parameters  # the library's defaults are the same
    assert (defaults["timeout_s"].default, defaults["max_retries"].default) == (section.timeout_s,
                                                                               section.max_retries)


def test_empty_choices_are_retried_then_reported(server, key_env, class_dir, tmp_path):
    server.fail("caption", "empty")
    server.fail("report", "empty", "empty", "empty")
    b = backend(server, tmp_path)
    with pytest.raises(ReasoningError, match=r"test-llm.*empty answer.*3 times"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert server.count("caption") == 5  # the empty caption was asked again and then answered
    assert json.loads((tmp_path / "out" / "captions.json").read_text())
    assert not (tmp_path / "out" / "report.md").exists()


def test_malformed_json_is_repaired(server, key_env, class_dir, tmp_path):
    server.fail("attributes", "malformed", "not_a_list")
    b = backend(server, tmp_path)
    result = reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    reqs = [r["body"]["messages"] for r in server.requests if r["kind"] == "attributes"]
    assert len(reqs) == 3
    assert "not valid" in reqs[1][-1]["content"] and "malformed JSON" in reqs[1][-1]["content"]
    assert reqs[1][-2] == {"role": "assistant", "content": 'Sure! Here it is: {"attributes": ["water", "rationale":'}
    assert "attributes" in reqs[2][-1]["content"] and "list" in reqs[2][-1]["content"]
    assert result.attributes.attributes == ["water", "blue waves"]
    n = server.count()  # the repaired chain is cached as well
    b2 = backend(server, tmp_path)
    reason_about_class(class_dir, tmp_path / "out2", b2)
    b2.close()
    assert server.count() == n


def test_malformed_json_is_never_passed_on(server, key_env, class_dir, tmp_path):
    server.fail("attributes", "malformed", "malformed", "malformed")
    b = backend(server, tmp_path, json_retries=2)
    with pytest.raises(ReasoningError, match=r"test-llm.*no valid attributes JSON.*3 attempts.*malformed JSON"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert not (tmp_path / "out" / "attributes.json").exists()
    # the failed chain is not cached: a rerun asks again (and now succeeds)
    b2 = backend(server, tmp_path)
    result = reason_about_class(class_dir, tmp_path / "out", b2)
    b2.close()
    assert server.count("attributes") == 4
    assert result.attributes.attributes == ["water", "blue waves"]


MALFORMED_CAPTION = "Sure! Here is what you asked for: {attributes: [water, sea"


def _cached_answers(tmp_path) -> list[str]:
    import diskcache

    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        return [cache[k] for k in cache.iterkeys()]


def test_malformed_caption_is_asked_again_and_never_cached(server, key_env, class_dir, tmp_path):
    server.fail("caption", "malformed")  # the first caption request; its repair and the other frames are fine
    b = backend(server, tmp_path, concurrency=1)
    result = reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    caps = [r["body"]["messages"] for r in server.requests if r["kind"] == "caption"]
    assert len(caps) == 5  # 4 frames + 1 repair
    assert caps[1][-2] == {"role": "assistant", "content": MALFORMED.strip()}
    assert "not usable" in caps[1][-1]["content"] and "JSON" in caps[1][-1]["content"]
    assert set(result.captions.values()) == {"A red circle floating on blue water with small waves."}
    assert result.captions_dropped == 0
    assert MALFORMED.strip() not in _cached_answers(tmp_path)
    n = server.count()  # a rerun is answered from the cache, the repaired caption included
    b2 = backend(server, tmp_path)
    reason_about_class(class_dir, tmp_path / "out2", b2)
    b2.close()
    assert server.count() == n


def test_caption_malformed_after_the_retry_is_dropped_counted_and_not_passed_on(server, key_env, class_dir,
                                                                               tmp_path):
    server.fail("caption", "malformed", "malformed")
    b = backend(server, tmp_path, concurrency=1, caption_retries=1)
    result = reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    out = tmp_path / "out"
    captions = json.loads((out / "captions.json").read_text())
    assert len(captions) == 3 and result.captions_dropped == 1
    assert json.loads((out / "attributes.json").read_text())["captions_dropped"] == 1
    for r in server.requests:  # the report and the attributes never see it
        if r["kind"] != "caption":
            assert "Sure!" not in json.dumps(r["body"]["messages"])
    assert MALFORMED.strip() not in _cached_answers(tmp_path)
    before = server.count("caption")  # the dropped frame is asked again on a rerun, the others come from cache
    b2 = backend(server, tmp_path, concurrency=1)
    again = reason_about_class(class_dir, tmp_path / "out2", b2)
    b2.close()
    assert server.count("caption") == before + 1 and again.captions_dropped == 0


def test_malformed_caption_already_in_the_cache_is_asked_again(server, key_env, class_dir, tmp_path):
    b = backend(server, tmp_path)
    reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    import diskcache

    with diskcache.Cache(str(tmp_path / "cache")) as cache:  # what a cache written before the check may hold
        for k in list(cache.iterkeys()):
            if cache[k].startswith("A red circle"):
                cache[k] = MALFORMED_CAPTION
    n = server.count("caption")
    b2 = backend(server, tmp_path)
    result = reason_about_class(class_dir, tmp_path / "out2", b2)
    b2.close()
    assert server.count("caption") == n + 4 and MALFORMED_CAPTION not in result.captions.values()


def test_every_caption_failing_is_an_error(server, key_env, class_dir, tmp_path):
    server.answers["caption"] = MALFORMED_CAPTION
    b = backend(server, tmp_path, caption_retries=0)
    with pytest.raises(ReasoningError, match="none of the 4 frames got an acceptable caption"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()


@pytest.mark.parametrize("text", [
    MALFORMED_CAPTION, '{"caption": "a red circle"}', "- a red circle\n- blue water", "I'm sorry, I cannot help.",
    "circle", "word " * 120, "",
])
def test_check_caption_rejects_what_is_not_a_description(text):
    from dexter.reasoning.schema import check_caption

    with pytest.raises(ValueError):
        check_caption(text)


def test_check_caption_keeps_a_plain_sentence():
    from dexter.reasoning.schema import check_caption

    assert check_caption('  "A red circle,\n on blue water."  ') == "A red circle, on blue water."


def test_attributes_that_only_name_the_class_are_repaired(server, key_env, class_dir, tmp_path):
    server.answers["attributes"] = '{"attributes": ["circles", "Circle"], "rationale": "it is a circle"}'
    b = backend(server, tmp_path, json_retries=1)
    with pytest.raises(ReasoningError, match="only repeat the class name"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert server.count("attributes") == 2


def test_unknown_model_names_model_and_endpoint(server, key_env, class_dir, tmp_path):
    one = write_class_dir(tmp_path / "dexter", 1, "square", ["land"], [[solid((90, 130, 50))]])
    server.fail("caption", "404")
    b = backend(server, tmp_path, vlm="no-such-vlm")
    with pytest.raises(ReasoningError) as e:
        reason_about_class(one, tmp_path / "out", b)
    b.close()
    msg = str(e.value)
    assert "'no-such-vlm' not found" in msg and server.base_url in msg and "does not exist" in msg
    assert server.count("caption") == 1  # a 404 is not retried


def test_wrong_path_is_reported_as_404_with_base_url_hint(server, key_env, class_dir, tmp_path):
    wrong = server.base_url.removesuffix("/v1") + "/nope"
    b = backend(server, tmp_path, base_url=wrong, concurrency=1)
    with pytest.raises(ReasoningError, match=r"not found at .*/nope.*base_url"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()


def test_unreachable_endpoint_is_reported(key_env, class_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    b = make_backend("openai", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV, max_retries=0,
                     timeout_s=1, cache_dir=None)
    with pytest.raises(ReasoningError, match=rf"cannot reach http://127.0.0.1:{port}/v1"):
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()


def test_rejected_key_is_reported_without_the_key(server, key_env, class_dir, tmp_path):
    server.fail("caption", *["401"] * 10)
    b = backend(server, tmp_path, concurrency=1)
    with pytest.raises(ReasoningError) as e:
        reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert f"${KEY_ENV}" in str(e.value) and "Incorrect API key" in str(e.value)
    assert KEY not in str(e.value)


def test_missing_key_for_openai_itself_is_an_early_error(monkeypatch):
    monkeypatch.delenv("DEXTER_NO_SUCH_KEY", raising=False)
    with pytest.raises(ReasoningError, match="DEXTER_NO_SUCH_KEY"):
        make_backend("openai", api_key_env="DEXTER_NO_SUCH_KEY")


def test_local_server_without_key_gets_a_placeholder(server, monkeypatch, class_dir, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    b = backend(server, tmp_path)
    reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert server.requests[0]["headers"]["authorization"] == "Bearer not-needed"


def test_prompt_files_are_overridable(server, key_env, class_dir, tmp_path):
    custom = tmp_path / "my_caption_prompt.txt"
    custom.write_text("CUSTOM CAPTION PROMPT\n")
    b = backend(server, tmp_path, prompts={"caption": str(custom), "report": None})
    reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    cap = [r for r in server.requests if r["kind"] == "caption"][0]["body"]["messages"][0]
    rep = [r for r in server.requests if r["kind"] == "report"][0]["body"]["messages"][0]
    assert cap == {"role": "system", "content": "CUSTOM CAPTION PROMPT"}
    assert "Bias hypothesis" in rep["content"]  # the packaged report prompt
    with pytest.raises(ReasoningError, match="not found"):
        backend(server, tmp_path, prompts={"report": str(tmp_path / "missing.txt")})


def test_report_missing_sections_is_asked_again(server, key_env, class_dir, tmp_path):
    server.answers["report"] = "## Key attributes and visual features\nWater.\n"
    b = backend(server, tmp_path)
    result = reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    assert server.count("report") == 2
    for section in REPORT_SECTIONS:
        assert f"## {section}" in result.report
    assert "did not write this section" in result.report


def test_attributes_json_example_is_valid():
    from dexter.reasoning.openai_backend import parse_attributes

    assert parse_attributes(ATTRIBUTES_JSON, "circle").attributes == ["water", "blue waves"]
    fenced = "```json\n" + ATTRIBUTES_JSON + "\n```"
    assert parse_attributes(fenced, "square").attributes == ["water", "blue waves", "circle"]
    with pytest.raises(ValueError, match="short phrase"):
        parse_attributes('{"attributes": ["' + "word " * 12 + '"], "rationale": "r"}', "circle")
    with pytest.raises(ValueError, match="rationale"):
        parse_attributes('{"attributes": ["water"]}', "circle")
