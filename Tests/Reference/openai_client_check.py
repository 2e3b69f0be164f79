"""keel serve through OpenAI's own Python client (pip install openai): completions and chat completions, streamed
and not, concurrent requests, and malformed ones (a clear 4xx, the server still up).

With the server's standard error as LOG, also: a client that stops reading a stream, or closes the connection of a
request that is not streamed, neither holds up other requests nor keeps its own generating.

Usage: openai_client_check.py BASE_URL [LOG]     (e.g. http://127.0.0.1:8080/v1); exits 0 when every check holds.
"""
import concurrent.futures
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import openai
from openai import OpenAI

base = sys.argv[1]
client = OpenAI(base_url=base, api_key="not-needed", max_retries=0)


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")


models = [m.id for m in client.models.list()]
check(models == ["keel"], f"/v1/models lists the model: {models}")

plain = client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0)
text = plain.choices[0].text
check(len(text) > 0 and plain.choices[0].finish_reason == "length", f"a completion of 12 tokens: {plain}")
check(plain.usage.completion_tokens == 12 and plain.usage.prompt_tokens > 0, f"usage counts tokens: {plain.usage}")

streamed = "".join(chunk.choices[0].text for chunk in
                   client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0, stream=True))
check(streamed == text, f"the streamed completion is the same text: {streamed!r} vs {text!r}")

messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a play?"}]
chat = client.chat.completions.create(model="keel", messages=messages, max_tokens=10, temperature=0)
reply = chat.choices[0].message.content
check(chat.choices[0].message.role == "assistant" and chat.choices[0].finish_reason in ("length", "stop"), f"a chat reply: {chat}")
chunks = list(client.chat.completions.create(model="keel", messages=messages, max_tokens=10, temperature=0, stream=True))
check(chunks[0].choices[0].delta.role == "assistant", "the stream starts with the assistant's role")
check("".join(c.choices[0].delta.content or "" for c in chunks) == reply, "the streamed chat reply is the same text")

# stream_options.include_usage: every chunk carries a null usage, and one more chunk, of no choices, the counts.
for counted, plain_reply in ((list(client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0, stream=True,
                                                            stream_options={"include_usage": True})), plain),
                             (list(client.chat.completions.create(model="keel", messages=messages, max_tokens=10, temperature=0,
                                                                 stream=True, stream_options={"include_usage": True})), chat)):
    check(counted[-1].choices == [] and counted[-1].usage is not None and counted[-1].usage.completion_tokens == plain_reply.usage.completion_tokens
          and counted[-1].usage.prompt_tokens == plain_reply.usage.prompt_tokens and all(c.usage is None for c in counted[:-1]),
          f"a stream with include_usage ends with the counts: {counted[-1]}")
check(all(getattr(c, "usage", None) is None for c in chunks), "a stream without stream_options has no usage")

# Concurrent requests are batched; each gets what it gets alone.
def complete(seed):
    return client.completions.create(model="keel", prompt="Now", max_tokens=16, temperature=1, seed=seed).choices[0].text

alone = [complete(seed) for seed in range(4)]
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    together = list(pool.map(complete, range(4)))
check(together == alone, f"concurrent requests give what they give alone: {together} vs {alone}")

# A stop string ends the text before it.
first = text.strip()[:1]
if first:
    stopped = client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0, stop=[first])
    check(first not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop", f"stop string: {stopped}")

# Requests without a seed draw differently (a random seed each, as OpenAI's); a seed, negative too, draws the same.
unseeded = [client.completions.create(model="keel", prompt="Now", max_tokens=16, temperature=1) for _ in range(3)]
check(len({c.choices[0].text for c in unseeded}) > 1, f"requests without a seed draw differently: {unseeded}")
check(complete(-5) == complete(-5) != complete(-6), "a negative seed draws the same each time, and its own text")
# Every 64-bit seed is taken exactly (through a double, 2^63 - 1 and 2^63 - 2 would be one seed, and refused).
check(complete(2**63 - 1) == complete(2**63 - 1) != complete(2**63 - 2) and complete(-2**63) != complete(-2**63 + 1),
      "the largest and smallest seeds are taken, each its own")
# Large negative seeds ending in zero (Foundation reads them as decimals): taken too, as any the log may name.
check(complete(-1461129139724881210) == complete(-1461129139724881210) != complete(-1461129139724881211),
      "a large negative seed ending in zero is taken")
if len(sys.argv) > 2:
    # The server's log names the seed it drew: sent back, it draws the same text.
    logged = [line for line in open(sys.argv[2]) if line.startswith(unseeded[-1].id + ":")]
    check(len(logged) == 1 and complete(int(logged[0].split(" seed ")[1].split(",")[0])) == unseeded[-1].choices[0].text,
          f"the logged seed, sent back, draws the same text: {logged}")

# A message's content as a list of text parts reads as the string; chat's max_completion_tokens limits the reply;
# OpenAI's presence and frequency penalties are taken.
parts = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages]
check(client.chat.completions.create(model="keel", messages=parts, max_tokens=10, temperature=0).choices[0].message.content == reply,
      "content as text parts reads as the string")
limited = client.chat.completions.create(model="keel", messages=messages, max_completion_tokens=3, temperature=0)
check(limited.usage.completion_tokens == min(3, chat.usage.completion_tokens) and reply.startswith(limited.choices[0].message.content),
      f"max_completion_tokens limits the reply: {limited}")
penalized = client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0, presence_penalty=2, frequency_penalty=2)
# vLLM's top_k -1 (all tokens) is taken, and top_p 0 takes the most likely token: the greedy text.
nucleus = client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=1, top_p=0, extra_body={"top_k": -1})
check(nucleus.choices[0].text == plain.choices[0].text, f"top_p 0 is greedy, top_k -1 all tokens: {nucleus} vs {plain}")
check(penalized.usage.completion_tokens == 12, f"the client's presence and frequency penalties are accepted (their effect: cli_tests.sh): {penalized}")

# Malformed requests: a clear 4xx, and the server stays up. What Keel does not do (n > 1, logprobs, echo) is refused,
# not ignored.
try:
    client.completions.create(model="keel", prompt="To be", max_tokens=-1)
    check(False, "max_tokens -1 is refused")
except openai.BadRequestError as error:
    check("max_tokens" in str(error), f"the error names max_tokens: {error}")
for body in (b"not json", b'{"prompt": 5}', b'{"messages": []}', b'{"prompt": "a", "seed": 1e300}', b'{"prompt": "a", "top_k": 2.5}',
             b'{"prompt": "a", "temperature": "hot"}', b'{"prompt": "a", "top_p": 0, "temperature": "hot"}', b'{"prompt": "a", "stream": "yes"}', b'{"prompt": "a", "stream": 1}',
             b'[1, 2]', b'{"prompt": "a", "n": 2}', b'{"prompt": "a", "logprobs": 2}', b'{"prompt": "a", "echo": true}',
             b'{"prompt": "a", "frequency_penalty": 3}', b'{"prompt": "a", "seed": 1.5}', b'{"prompt": "a", "seed": 9223372036854775808}',
             b'{"prompt": "a", "stream_options": {"include_usage": true}}', b'{"prompt": "a", "stream": true, "stream_options": 1}',
             b'{"prompt": "a", "stream": true, "stream_options": {"include_usage": "yes"}}',
             b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}',
             b'{"messages": [{"role": "user", "content": "hi"}], "logprobs": true}',
             # What would change the reply's form is refused, not ignored.
             b'{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}',
             b'{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}',
             b'{"prompt": "a", "logit_bias": {"5": 10}}', b'{"prompt": "a", "suffix": "x"}', b'{"prompt": "a", "best_of": 2}'):
    path = "/chat/completions" if b"messages" in body else "/completions"
    request = urllib.request.Request(base + path, data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request)
        check(False, f"{body!r} is refused")
    except urllib.error.HTTPError as error:
        check(error.code == 400 and "message" in json.loads(error.read())["error"], f"{body!r}: 400 with a message")
try:
    urllib.request.urlopen(base + "/completions")
    check(False, "GET on /completions is refused")
except urllib.error.HTTPError as error:
    check(error.code == 405 and "GET" in json.loads(error.read())["error"]["message"], f"GET on /completions is 405, not {error.code}")
try:
    urllib.request.urlopen(base + "/nothing")
    check(False, "an unknown path is 404")
except urllib.error.HTTPError as error:
    check(error.code == 404, f"an unknown path is 404, not {error.code}")
for stops, what in ((["x"] * 33, "33 stop strings"), (["x" * 1025], "a stop string of 1,025 bytes")):
    request = urllib.request.Request(base + "/completions", data=json.dumps({"prompt": "a", "stop": stops}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request)
        check(False, f"{what} is refused")
    except urllib.error.HTTPError as error:
        check(error.code == 400 and "'stop' takes at most 32 strings of at most 1024 bytes each" in json.loads(error.read())["error"]["message"],
              f"{what}: 400 naming the limit, not {error.code}")
again = client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0)
check(again.choices[0].text == text, "after the errors the server still answers, the same")


def send_raw(body):
    """Sends a completion request on a socket of its own and returns the socket, unread."""
    address = urllib.parse.urlparse(base)
    raw = socket.create_connection((address.hostname, address.port))
    payload = json.dumps(body).encode()
    raw.sendall(b"POST " + address.path.encode() + b"/completions HTTP/1.1\r\nHost: keel\r\nContent-Type: application/json\r\n"
                + b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    return raw


# A refusal that comes before the client has sent its whole body still reaches it: the server reads what comes on
# rather than reset the connection under the response.
address = urllib.parse.urlparse(base)
with socket.create_connection((address.hostname, address.port)) as raw:
    try:
        raw.sendall(b"POST " + address.path.encode() + b"/completions HTTP/1.1\r\nHost: keel\r\nContent-Length: 9000000\r\n\r\n"
                    + b"x" * 9_000_000)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    except OSError as error:
        answer = repr(error).encode()
check(answer.startswith(b"HTTP/1.1 413") and b"over 8388608 bytes" in answer, f"a body over the limit gets its 413: {answer[:200]!r}")

# Expect: 100-continue (curl sends it for bodies over 1 KiB): the server says to go on before the body comes, rather
# than leave the client waiting; a body over the limit is refused at once, and an expectation it cannot meet is 417.
def expecting(length, expectation=b"100-continue"):
    raw = socket.create_connection((address.hostname, address.port), timeout=10)
    raw.sendall(b"POST " + address.path.encode() + b"/completions HTTP/1.1\r\nHost: keel\r\nContent-Type: application/json\r\n"
                + b"Expect: " + expectation + b"\r\nContent-Length: " + str(length).encode() + b"\r\n\r\n")
    return raw, raw.recv(65536)


payload = json.dumps({"prompt": "To be", "max_tokens": 12, "temperature": 0}).encode()
raw, interim = expecting(len(payload))
with raw:
    raw.sendall(payload)
    answer = b""
    while chunk := raw.recv(65536):
        answer += chunk
check(interim == b"HTTP/1.1 100 Continue\r\n\r\n" and answer.startswith(b"HTTP/1.1 200")
      and json.loads(answer.split(b"\r\n\r\n", 1)[1])["choices"][0]["text"] == text,
      f"Expect: 100-continue gets 100 Continue, then the answer: {interim!r} {answer[:100]!r}")
# HTTP/1.0 has no interim responses: its Expect is ignored, and the answer comes whole.
with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
    raw.sendall(b"POST " + address.path.encode() + b"/completions HTTP/1.0\r\nHost: keel\r\nExpect: 100-continue\r\nContent-Length: "
                + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    answer = b""
    while chunk := raw.recv(65536):
        answer += chunk
check(answer.startswith(b"HTTP/1.1 200") and b"100 Continue" not in answer, f"an HTTP/1.0 Expect is ignored: {answer[:80]!r}")
for length, expectation, status in ((9_000_000, b"100-continue", b"413"), (len(payload), b"something-else", b"417")):
    raw, refusal = expecting(length, expectation)
    raw.close()
    check(refusal.startswith(b"HTTP/1.1 " + status), f"Expect {expectation!r} with {length} bytes: {status!r}, not {refusal[:60]!r}")


def logged_ends():
    return [line for line in open(sys.argv[2]) if "ended early: the client has gone" in line]


if len(sys.argv) > 2:
    # A client that stops reading its stream: generation never waits for it. Another request is answered (within a
    # minute: the server's socket buffers fill within a second of a million-token stream), and the stalled one ends
    # once 4 MiB wait unsent (some 25,000 tokens: seconds here, a few minutes on a machine busy with other work).
    stalled = send_raw({"prompt": "To be", "max_tokens": 1000000, "temperature": 1, "stream": True})
    time.sleep(1)
    patient = OpenAI(base_url=base, api_key="not-needed", max_retries=0, timeout=60)
    answered = patient.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0)
    check(answered.choices[0].text == text, "a request beside a stalled stream is answered, the same")
    for _ in range(3000):
        if logged_ends():
            break
        time.sleep(0.1)
    check(len(logged_ends()) == 1, "the stalled stream ends: its client has gone (the server's log)")
    stalled.close()
    # A request that is not streamed, whose client closes the connection: it ends too, not a million tokens later.
    send_raw({"prompt": "To be", "max_tokens": 1000000, "temperature": 1}).close()
    for _ in range(600):
        if len(logged_ends()) == 2:
            break
        time.sleep(0.1)
    check(len(logged_ends()) == 2, "a closed request that is not streamed ends: its client has gone (the server's log)")
    # The same with bytes after the request (another request, pipelined, sent once the first is being generated: read
    # with it, they would hide nothing): the server sees past them to the close.
    pipelined = send_raw({"prompt": "To be", "max_tokens": 1000000, "temperature": 1})
    time.sleep(1)
    pipelined.sendall(b"GET /v1/models HTTP/1.1\r\nHost: keel\r\n\r\n")
    pipelined.close()
    for _ in range(600):
        if len(logged_ends()) == 3:
            break
        time.sleep(0.1)
    check(len(logged_ends()) == 3, "a closed request with bytes after it ends too (the server's log)")
    again = client.completions.create(model="keel", prompt="To be", max_tokens=12, temperature=0)
    check(again.choices[0].text == text, "after the clients that left, the server still answers, the same")
print("ok")
