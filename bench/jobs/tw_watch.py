#!/usr/bin/python3
"""tw_watch.py: the WebSocket side of taskwire's steady run in the job-queue benchmark.

    tw_watch.py '{"url":"ws://127.0.0.1:PORT/ws","tokens":[...],"expect":N,"out":F}'

Opens one WebSocket per token (one per client id), prints {"event":"ready"} once every one has
said {"type":"connected"} (and the relay's subscriptions have had a moment to reach the worker),
then records when each task's `started` and final event first arrived.  Prints
{"event":"done",...} once `expect` tasks are final, and writes {"start":{id:t},"final":{id:t}}
to F on SIGTERM.  Times are CLOCK_MONOTONIC nanoseconds, as in the harness.  A process of its
own, so that the arrival times do not wait for the submitting threads.
"""
import asyncio
import json
import signal
import sys
import time

import websockets

FINAL = ("succeeded", "failed", "cancelled")
SUBSCRIBE_SETTLE_S = 0.3  # the relay's upstream subscription reaches the worker within this


def say(event, **fields):
    sys.stdout.write(json.dumps(dict(event=event, **fields)) + "\n")
    sys.stdout.flush()


async def main(options):
    start, final, failed, closed = {}, {}, [], []
    expect = options.get("expect", 0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    told = []

    async def watch(ws):
        try:
            async for text in ws:
                t = time.monotonic_ns()
                message = json.loads(text)
                if message.get("type") != "task":
                    continue
                event, task_id = message.get("event"), message["task"]["id"]
                if event == "started":
                    start.setdefault(task_id, t)
                elif event in FINAL and task_id not in final:
                    final[task_id] = t
                    if event != "succeeded":
                        failed.append(task_id)
                    if expect and len(final) >= expect and not told:
                        told.append(1)
                        say("done", count=len(final), last_final=t)
        except websockets.ConnectionClosed as error:
            closed.append(str(error))

    sockets = []
    for token in options["tokens"]:
        ws = await websockets.connect(options["url"], max_size=1 << 20)
        await ws.send(json.dumps({"type": "auth", "token": token}))  # the token, first
        hello = json.loads(await ws.recv())
        if hello.get("type") != "connected":
            raise RuntimeError(f"first message was {hello}")
        sockets.append(ws)
    await asyncio.sleep(SUBSCRIBE_SETTLE_S)
    tasks = [asyncio.create_task(watch(ws)) for ws in sockets]
    say("ready", t=time.monotonic_ns())
    await stop.wait()
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    with open(options["out"], "w") as f:
        json.dump({"start": start, "final": final, "count": len(final), "failed": len(failed),
                   "closed": closed}, f)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
