// lib.mjs: what the Node.js peers of the job-queue benchmark share: the command line, the
// clock, the JSON lines the harness reads, the paced producer loop and the worker's records.
//
// Every time is CLOCK_MONOTONIC in nanoseconds (process.hrtime), the clock the harness and the
// Python peers read too, so times taken in different processes on this machine compare.
import { writeFileSync } from "node:fs";

export const now = () => Number(process.hrtime.bigint());

// argv: ROLE [JSON options]
export function args() {
    const role = process.argv[2];
    const options = process.argv[3] ? JSON.parse(process.argv[3]) : {};
    return { role, options };
}

// One JSON line on stdout for the harness.
export function say(event, fields = {}) {
    process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

export function fail(error) {
    say("error", { message: String(error && error.stack ? error.stack : error) });
    process.exit(1);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Submit `rate` jobs a second for `seconds` on a fixed schedule (open loop: a slow submit does
// not delay the next one): submit(i) is called for job i and returns a promise.  Returns
// {submit: {i: time of the call}, ack: {i: time it resolved}, max_lag_ms, errors}.
export async function paced(rate, seconds, submit) {
    const total = Math.round(rate * seconds);
    const times = new Array(total);
    const acks = new Array(total);
    const pending = [];
    let errors = 0;
    let maxLag = 0;
    const start = now();
    let i = 0;
    while (i < total) {
        const t = now();
        while (i < total && start + (i * 1e9) / rate <= t) {
            maxLag = Math.max(maxLag, t - (start + (i * 1e9) / rate));
            const k = i;
            times[k] = now();
            pending.push(submit(k).then(() => { acks[k] = now(); }, () => { errors++; }));
            i++;
        }
        if (i < total) {
            await sleep(Math.max(0, (start + (i * 1e9) / rate - now()) / 1e6));
        }
    }
    await Promise.all(pending);
    const submitted = {};
    const acked = {};
    times.forEach((t, k) => { submitted[k] = t; });
    acks.forEach((t, k) => { if (t) acked[k] = t; });
    return { submit: submitted, ack: acked, max_lag_ms: maxLag / 1e6, errors };
}

// A worker's records: when each job started and (where the worker sees it) became final.
// done(i) counts a final job; once `expect` are final it tells the harness.
export class Records {
    constructor(expect) {
        this.expect = expect || 0;
        this.start = {};
        this.final = {};
        this.count = 0;
        this.first = 0;
        this.last = 0;
        this.told = false;
    }

    started(i) {
        const t = now();
        this.start[i] = t;
        if (!this.first) this.first = t;
    }

    done(i, t = now()) {
        this.final[i] = t;
        this.count++;
        this.last = t;
        if (this.expect && this.count >= this.expect && !this.told) {
            this.told = true;
            say("done", { count: this.count, first_start: this.first, last_final: this.last });
        }
    }

    write(path) {
        writeFileSync(path, JSON.stringify({ start: this.start, final: this.final,
            count: this.count }));
    }
}

// Stop on SIGTERM/SIGINT: run `stop` (closing the library's connections), write the records.
export function onStop(stop) {
    let stopping = false;
    const handler = async () => {
        if (stopping) return;
        stopping = true;
        try {
            await stop();
        } catch (error) {
            say("error", { message: String(error) });
        }
        process.exit(0);
    };
    process.on("SIGTERM", handler);
    process.on("SIGINT", handler);
}
