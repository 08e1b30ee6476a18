// pgboss.mjs: the pg-boss peer of the job-queue benchmark (PostgreSQL).
//
//   node pgboss.mjs enqueue '{"db":URL,"jobs":N}'             createQueue, insert in chunks
//   node pgboss.mjs work    '{"db":URL,"expect":N,"out":F,"loops":L,"batch":B}'  L work() loops
//   node pgboss.mjs produce '{"db":URL,"rate":R,"seconds":S,"out":F}'   send() at a rate
//   node pgboss.mjs counts  '{"db":URL}'                      the job table's states
//
// pg-boss 10 has no teamSize: each work() call is one polling loop that fetches up to
// batchSize jobs, hands them to the handler and polls again after pollingIntervalSeconds
// (0.5 s at least), whether or not it found jobs, unless notifyWorker(id) was called
// meanwhile.  L loops (16 by default), each running 16 / L jobs of its batch at once, keep 16
// jobs running at most; a loop whose fetch came back full notifies itself, so a backlog is
// fetched batch after batch instead of one batch per interval.  Many loops poll often (low
// latency) but contend for the same rows; one loop with a large batch drains a backlog with
// a third of the database's work, and waits up to the interval for a new job.  pg-boss sends no completion notification;
// a job is final here when pg-boss's own UPDATE ... state = 'completed' has returned from
// PostgreSQL (committed, synchronous_commit on): the database adapter handed to pg-boss
// (its `db` option) timestamps that reply.  It watches pg-boss's queries, it changes none.
import pg from "pg";
import PgBoss from "pg-boss";
import { args, say, fail, now, paced, Records, onStop } from "./lib.mjs";
import { writeFileSync } from "node:fs";

const QUEUE = "bench";
const BULK = 1000; // jobs per insert call
const POLL_S = 0.5; // pg-boss's minimum polling interval
const PRODUCER_CONNECTIONS = 16; // steady: submissions in flight at most

const { role, options } = args();
const CONCURRENCY = 16; // jobs running at once, over all loops
const LOOPS = options.loops || 16; // work() calls
const batch = options.batch || 50; // jobs a loop fetches at once
const parallel = Math.max(1, Math.floor(CONCURRENCY / LOOPS)); // jobs of a batch at once


// pg-boss's `db` option: an object with executeSql(text, values).
function database(onCompleted, connections = LOOPS + 4) {
    const pool = new pg.Pool({ connectionString: options.db, max: connections });
    pool.on("error", (error) => say("error", { message: String(error) }));
    return {
        pool,
        async executeSql(text, values) {
            const result = await pool.query(text, values);
            if (onCompleted && /SET completed_on = now\(\),\s*state = 'completed'/.test(text)) {
                onCompleted(values[1]);
            }
            return result;
        },
    };
}

async function boss(db, extra = {}) {
    const b = new PgBoss({ db, ...extra });
    b.on("error", (error) => say("error", { message: String(error) }));
    await b.start();
    await b.createQueue(QUEUE);
    return b;
}

async function enqueue() {
    const db = database();
    const b = await boss(db, { supervise: false, schedule: false });
    const t = now();
    for (let i = 0; i < options.jobs; i += BULK) {
        const jobs = [];
        for (let k = i; k < Math.min(options.jobs, i + BULK); k++) {
            jobs.push({ name: QUEUE, data: { i: k } });
        }
        await b.insert(jobs);
    }
    say("enqueued", { jobs: options.jobs, seconds: (now() - t) / 1e9 });
    await b.stop({ graceful: false, wait: true });
    await db.pool.end();
}

async function work() {
    const records = new Records(options.expect);
    const indexOf = new Map(); // pg-boss job id -> our job index
    const db = database((ids) => {
        const t = now();
        for (const id of ids) {
            const i = indexOf.get(id);
            indexOf.delete(id);
            if (i !== undefined) records.done(i, t);
        }
    });
    const b = await boss(db);
    const run = async (job) => {
        records.started(job.data.i);
        indexOf.set(job.id, job.data.i);
    };
    const loop = (self) => async (jobs) => {
        let next = 0;
        const slot = async () => {
            while (next < jobs.length) await run(jobs[next++]);
        };
        await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, slot));
        if (jobs.length === batch && self.id) b.notifyWorker(self.id);
    };
    // The loops start POLL_S / LOOPS apart, so their polls stay spread over the interval
    // instead of all landing at once.
    for (let k = 0; k < LOOPS; k++) {
        if (k) await new Promise((resolve) => setTimeout(resolve, (POLL_S * 1000) / LOOPS));
        const self = {};
        self.id = await b.work(QUEUE, { batchSize: batch, pollingIntervalSeconds: POLL_S },
            loop(self));
    }
    onStop(async () => {
        await b.stop({ graceful: true, wait: true, timeout: 5000 });
        await db.pool.end();
        if (options.out) records.write(options.out);
    });
    say("ready", { t: now() });
}

async function produce() {
    const db = database(null, PRODUCER_CONNECTIONS);
    const b = await boss(db, { supervise: false, schedule: false });
    const result = await paced(options.rate, options.seconds,
        (i) => b.send(QUEUE, { i }));
    writeFileSync(options.out, JSON.stringify(result));
    say("produced", { jobs: Object.keys(result.submit).length, max_lag_ms: result.max_lag_ms,
        errors: result.errors });
    await b.stop({ graceful: false, wait: true });
    await db.pool.end();
}

async function counts() {
    const client = new pg.Client({ connectionString: options.db });
    await client.connect();
    const { rows } = await client.query(
        "select state, count(*)::int as n from pgboss.job where name = $1 group by state",
        [QUEUE]);
    const out = {};
    for (const row of rows) out[row.state] = row.n;
    say("counts", out);
    await client.end();
}

const roles = { enqueue, work, produce, counts };
if (!roles[role]) fail(`unknown role ${role}`);
roles[role]().catch(fail);
