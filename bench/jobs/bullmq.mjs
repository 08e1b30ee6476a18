// bullmq.mjs: the BullMQ peer of the job-queue benchmark (Redis).
//
//   node bullmq.mjs enqueue '{"port":P,"jobs":N}'             addBulk in chunks, then exit
//   node bullmq.mjs work    '{"port":P,"expect":N,"out":F}'   Worker, concurrency 16
//   node bullmq.mjs produce '{"port":P,"rate":R,"seconds":S,"out":F}'   queue.add at a rate
//   node bullmq.mjs listen  '{"port":P,"expect":N,"out":F}'   QueueEvents "completed"
//   node bullmq.mjs counts  '{"port":P}'                      the queue's job counts
//
// A job's data is {i}; the processor records its start and returns i, which the "completed"
// event carries, so the listener knows which job became final without asking Redis.
import { Queue, Worker, QueueEvents } from "bullmq";
import { args, say, fail, now, paced, Records, onStop } from "./lib.mjs";
import { writeFileSync } from "node:fs";

const QUEUE = "bench";
const CONCURRENCY = 16;
const BULK = 1000; // jobs per addBulk call

const { role, options } = args();
const connection = { host: "127.0.0.1", port: options.port };

async function enqueue() {
    const queue = new Queue(QUEUE, { connection });
    const t = now();
    for (let i = 0; i < options.jobs; i += BULK) {
        const chunk = [];
        for (let k = i; k < Math.min(options.jobs, i + BULK); k++) {
            chunk.push({ name: "noop", data: { i: k } });
        }
        await queue.addBulk(chunk);
    }
    say("enqueued", { jobs: options.jobs, seconds: (now() - t) / 1e9 });
    await queue.close();
}

async function work() {
    const records = new Records(options.expect);
    const worker = new Worker(QUEUE, async (job) => {
        records.started(job.data.i);
        return job.data.i;
    }, { connection, concurrency: CONCURRENCY, autorun: false });
    // "completed" is emitted once the job is moved to completed in Redis.
    worker.on("completed", (job) => records.done(job.data.i));
    worker.on("error", (error) => say("error", { message: String(error) }));
    onStop(async () => {
        await worker.close();
        if (options.out) records.write(options.out);
    });
    await worker.waitUntilReady();
    say("ready", { t: now() });
    worker.run();
}

async function produce() {
    const queue = new Queue(QUEUE, { connection });
    await queue.waitUntilReady();
    const result = await paced(options.rate, options.seconds,
        (i) => queue.add("noop", { i }));
    writeFileSync(options.out, JSON.stringify(result));
    say("produced", { jobs: Object.keys(result.submit).length, max_lag_ms: result.max_lag_ms,
        errors: result.errors });
    await queue.close();
}

async function listen() {
    const events = new QueueEvents(QUEUE, { connection, autorun: false });
    const records = new Records(options.expect);
    events.on("completed", ({ returnvalue }) => records.done(Number(returnvalue)));
    onStop(async () => {
        await events.close();
        records.write(options.out);
    });
    await events.waitUntilReady();
    events.run();
    say("ready", { t: now() });
}

async function counts() {
    const queue = new Queue(QUEUE, { connection });
    say("counts", await queue.getJobCounts("completed", "failed", "waiting", "active",
        "delayed"));
    await queue.close();
}

const roles = { enqueue, work, produce, listen, counts };
if (!roles[role]) fail(`unknown role ${role}`);
roles[role]().catch(fail);
