// graphile.mjs: the graphile-worker peer of the job-queue benchmark (PostgreSQL).
//
//   node graphile.mjs enqueue '{"db":URL,"jobs":N}'             migrate, addJobs in chunks
//   node graphile.mjs work    '{"db":URL,"expect":N,"out":F}'   run(), concurrency 16
//   node graphile.mjs produce '{"db":URL,"rate":R,"seconds":S,"out":F}'   addJob at a rate
//   node graphile.mjs counts  '{"db":URL}'                      jobs left in the table
//
// graphile-worker deletes a job when it completes and announces nothing outside its process;
// its "job:success" event comes before that delete is even sent.  So a job is final here when
// the worker's own DELETE of it has returned from PostgreSQL (committed: autocommit, with
// synchronous_commit on): the pool handed to graphile-worker timestamps that reply.  This
// watches graphile-worker's queries, it changes none.
import pg from "pg";
import { run, makeWorkerUtils, Logger } from "graphile-worker";
import { args, say, fail, now, paced, Records, onStop } from "./lib.mjs";
import { writeFileSync } from "node:fs";

const CONCURRENCY = 16;
const BULK = 1000; // jobs per addJobs call
// Batching, graphile-worker's own performance options: the pool locks and pulls this many
// jobs at once, and completions made in the same turn share one DELETE.
const LOCAL_QUEUE = 200;
const COMPLETE_BATCH_DELAY_MS = 0;
const PRODUCER_CONNECTIONS = 16; // steady: submissions in flight at most (default 10)
// Errors and warnings only: a line per job would cost the worker more than the job.
const logger = new Logger(() => (level, message) => {
    if (level === "error" || level === "warning") say(level, { message });
});

const { role, options } = args();

function utils() {
    return makeWorkerUtils({ connectionString: options.db, logger,
        maxPoolSize: PRODUCER_CONNECTIONS });
}

async function enqueue() {
    const u = await utils();
    await u.migrate();
    const t = now();
    for (let i = 0; i < options.jobs; i += BULK) {
        const specs = [];
        for (let k = i; k < Math.min(options.jobs, i + BULK); k++) {
            specs.push({ identifier: "noop", payload: { i: k } });
        }
        await u.addJobs(specs);
    }
    say("enqueued", { jobs: options.jobs, seconds: (now() - t) / 1e9 });
    await u.release();
}

// A pg.Pool whose clients report when one of graphile-worker's completing DELETEs returns.
function watchedPool(onDeleted) {
    const pool = new pg.Pool({ connectionString: options.db, max: CONCURRENCY + 2 });
    pool.on("error", (error) => say("error", { message: String(error) }));
    pool.on("connect", (client) => {
        const query = client.query.bind(client);
        client.query = (config, ...rest) => {
            const result = query(config, ...rest);
            const text = config && typeof config === "object" ? config.text : config;
            if (typeof text === "string" && /^delete from .*_private_jobs/.test(text) &&
                result && typeof result.then === "function") {
                const ids = config.values[0];
                result.then(() => onDeleted(Array.isArray(ids) ? ids : [ids]), () => {});
            }
            return result;
        };
    });
    return pool;
}

async function work() {
    const records = new Records(options.expect);
    const indexOf = new Map(); // graphile job id -> our job index
    const pool = watchedPool((ids) => {
        const t = now();
        for (const id of ids) {
            const i = indexOf.get(String(id));
            indexOf.delete(String(id));
            if (i !== undefined) records.done(i, t);
        }
    });
    const runner = await run({
        pgPool: pool,
        concurrency: CONCURRENCY,
        noHandleSignals: true,
        logger,
        taskList: {
            noop: async (payload, helpers) => {
                records.started(payload.i);
                indexOf.set(String(helpers.job.id), payload.i);
            },
        },
        preset: { worker: { localQueue: { size: LOCAL_QUEUE },
            completeJobBatchDelay: COMPLETE_BATCH_DELAY_MS } },
    });
    onStop(async () => {
        await runner.stop();
        await pool.end();
        if (options.out) records.write(options.out);
    });
    say("ready", { t: now() });
}

async function produce() {
    const u = await utils();
    await u.migrate();
    const result = await paced(options.rate, options.seconds,
        (i) => u.addJob("noop", { i }));
    writeFileSync(options.out, JSON.stringify(result));
    say("produced", { jobs: Object.keys(result.submit).length, max_lag_ms: result.max_lag_ms,
        errors: result.errors });
    await u.release();
}

async function counts() {
    const client = new pg.Client({ connectionString: options.db });
    await client.connect();
    const { rows } = await client.query(
        "select count(*)::int as left, count(*) filter (where last_error is not null)::int as " +
        "errored from graphile_worker._private_jobs");
    say("counts", rows[0]);
    await client.end();
}

const roles = { enqueue, work, produce, counts };
if (!roles[role]) fail(`unknown role ${role}`);
roles[role]().catch(fail);
