"""Fill a database through a real proxy, to try the kimi-proxy command on (no provider or key needed).

Starts the local fake provider and mitmdump with Kimi, then plays two agent
sessions through the official SDKs: a conversation that grows towards a
small model's window until the guard refuses it, and one with an oversized
tool result that gets compacted. Prints the database's path; the flows are
saved too, to open in mitmweb.

    scripts/run python scripts/demo.py [--db /tmp/kimi-demo.db] [--flows /tmp/kimi-demo.mitm]
    scripts/run kimi-proxy --db /tmp/kimi-demo.db sessions
    scripts/run mitmweb -s addons/kimi.py -r /tmp/kimi-demo.mitm
"""

from __future__ import annotations

import argparse
import sqlite3
import ssl
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import anthropic
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="/tmp/kimi-demo.db")
    parser.add_argument("--flows", default="/tmp/kimi-demo.mitm", help="the flows, for mitmweb -r")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kimi-demo-"))
    config = work / "config.toml"
    config.write_text('[models."kimi-k2-demo"]\nprovider = "moonshot"\ncontext_window = 6000\n')
    with FakeProvider(tls=True) as fake, Mitmdump(
            work, fake.port, options={"kimi_config": str(config), "save_stream_file": args.flows}) as proxy:
        trust = ssl.create_default_context(cafile=str(proxy.ca))
        chat = openai.OpenAI(api_key="sk-demo", base_url="https://api.moonshot.ai/v1", max_retries=0,
                             http_client=openai.DefaultHttpxClient(proxy=proxy.url, verify=trust))
        history = [{"role": "user", "content": "I prefer pytest over unittest. We're going to ship the "
                                               "refactor next week. Never touch the billing module."}]
        try:
            for turn in range(40):
                chat.chat.completions.create(model="kimi-k2-demo", messages=history,
                                             extra_headers={"X-Kimi-Session": "refactor"})
                history += [{"role": "assistant", "content": f"Step {turn} done: " + "patched code " * 40},
                            {"role": "user", "content": f"Next step {turn}, please. " + "context " * 60}]
        except openai.BadRequestError as e:
            print(f"refused, as expected: {str(e)[:100]}...", file=sys.stderr)
        listing = subprocess.run(["ls", "-lR", sysconfig.get_paths()["purelib"]], capture_output=True, text=True,
                                 check=True).stdout
        claude = anthropic.Anthropic(api_key="sk-ant-demo", max_retries=0, http_client=anthropic.DefaultHttpxClient(
            proxy=proxy.url, verify=trust))
        messages = [
            {"role": "user", "content": "Where does tiktoken keep its encodings? Je préfère des réponses courtes."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash",
                                               "input": {"command": "ls -lR site-packages"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": listing}]}]
        for turn in range(3):
            claude.messages.create(model="claude-opus-4-5", max_tokens=200, messages=messages,
                                   extra_headers={"X-Kimi-Session": "explore"})
            messages = messages + [{"role": "assistant", "content": f"Answer {turn}."},
                                   {"role": "user", "content": f"And the tests, turn {turn}?"}]
        time.sleep(1.5)  # the memory workers wait for a pause in the traffic
    Path(args.db).unlink(missing_ok=True)
    with sqlite3.connect(proxy.db) as source, sqlite3.connect(args.db) as target:
        source.backup(target)  # the database and its write-ahead log, as one file
    Path(args.db).chmod(0o600)
    print(args.db)


if __name__ == "__main__":
    main()
