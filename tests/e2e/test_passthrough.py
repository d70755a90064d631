"""The native pass-through `/{provider}/…` with the official `openai` SDK, unmodified, pointed
at `<gateway>/openai/v1` and calling endpoints the gateway does not translate: Images
(`images.generate`) and text to speech (`audio.speech`, binary audio streamed back). First the
same calls against the mock directly, which proves the mock answers them as OpenAI does.
"""

import base64

import openai
import pytest

from conftest import MASTER_KEY, OPENAI_KEY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def speech_bytes(magic: bytes, text: str) -> bytes:
    """The mock's audio for `text` (crates/test-support/src/openai.rs, `speech_bytes`)."""
    out = bytearray(magic)
    for i, _ in enumerate(text):
        out.extend((b + i) % 256 for b in range(256))
    return bytes(out)


def calls(c):
    img = c.images.generate(model="gpt-image-1", prompt="a lighthouse", n=2, size="1024x1024")
    assert len(img.data) == 2
    assert base64.b64decode(img.data[0].b64_json).startswith(PNG_MAGIC)
    assert img.usage.input_tokens > 0
    url = c.images.generate(model="dall-e-3", prompt="a lighthouse", response_format="url")
    assert url.data[0].url.startswith("https://")
    with pytest.raises(openai.BadRequestError):
        c.images.generate(model="gpt-image-1", prompt="x", n=11)
    speech = c.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hello there")
    assert speech.content == speech_bytes(b"ID3", "hello there")
    with c.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="x" * 300, response_format="wav") as r:
        streamed = b"".join(r.iter_bytes(8192))
    assert streamed == speech_bytes(b"RIFF", "x" * 300)
    return img


def test_the_mock_answers_images_and_speech_as_openai_does(mock_url):
    calls(openai.OpenAI(base_url=f"{mock_url}/v1", api_key=OPENAI_KEY, max_retries=0))
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{mock_url}/v1", api_key="wrong", max_retries=0).images.generate(
            model="gpt-image-1", prompt="x")


def test_the_openai_sdk_reaches_untranslated_endpoints_through_the_pass_through(gateway):
    c = openai.OpenAI(base_url=f"{gateway.url}/openai/v1", api_key=MASTER_KEY, max_retries=0)
    calls(c)
    raw = c.audio.speech.with_raw_response.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")
    assert raw.headers["content-type"] == "audio/mpeg"
    rec = gateway.log_of(raw.headers["x-portcullis-request-id"])
    assert rec["endpoint"] == "passthrough"
    assert rec["provider"] == "openai"
    assert rec["status"] == 200
    assert '"/v1/audio/speech"' in rec["metadata"]
    # The gateway's credential is required, and the provider's key is not the caller's.
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway.url}/openai/v1", api_key=OPENAI_KEY,
                      max_retries=0).images.generate(model="gpt-image-1", prompt="x")
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=f"{gateway.url}/nobody/v1", api_key=MASTER_KEY,
                      max_retries=0).images.generate(model="gpt-image-1", prompt="x")
