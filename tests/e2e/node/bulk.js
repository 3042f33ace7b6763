// DecideBatch and DecideStream from Node.js with @grpc/grpc-js: a batch with a bad request in the middle,
// the same batch retried, and a bidirectional stream; prints what came back as one JSON object.
// Usage: node bulk.js ADDRESS TOKEN PROTO_DIR
const { client, meta, toStruct } = require("./common")(...process.argv.slice(2));
const payment = (ref, amount) => ({
  ruleset: "payment-approval",
  facts: [{ type: "payment", values: toStruct({
    payment_ref: ref, amount, currency: "EUR", beneficiary_iban: "DE89370400440532013000",
    initiated_by: "alice", new_beneficiary: false }) }],
});
// the middle request's amount is a string: it fails alone, with the status a unary Decide would give it
const batch = { idempotency_key: "node-batch-1",
                requests: [payment("PAY-B1", 250), payment("PAY-B2", "lots"), payment("PAY-B3", 300)] };
const summary = (r) => ({
  index: r.index, idempotency_key: r.idempotency_key,
  decision_id: r.decision ? r.decision.decision_id : "", outcome: r.decision ? r.decision.outcome : "",
  replayed: r.decision ? r.decision.idempotent_replay : false,
  error: r.error ? { code: r.error.code, message: r.error.message, details: r.error.details.map((d) => d.type_url) }
    : null,
});
const call = (method, request) => new Promise((resolve, reject) =>
  client[method](request, meta, { deadline: Date.now() + 30000 },
                 (err, resp) => err ? reject(new Error(`${method} failed: ${err.code} ${err.details}`)) : resolve(resp)));

function stream(requests) {
  return new Promise((resolve, reject) => {
    const results = [];
    const s = client.DecideStream(meta, { deadline: Date.now() + 30000 });
    s.on("data", (m) => results.push(summary(m.result)));
    s.on("error", (err) => reject(new Error(`DecideStream failed: ${err.code} ${err.details}`)));
    s.on("end", () => resolve(results));
    for (const r of requests) s.write({ request: r });
    s.end();
  });
}

(async () => {
  const first = await call("DecideBatch", batch);
  const again = await call("DecideBatch", batch);
  const streamed = await stream([{ ...payment("PAY-S1", 100), idempotency_key: "node-stream-1" },
                                 payment("PAY-S2", "x"), payment("PAY-S3", 200)]);
  console.log(JSON.stringify({ batch: first.results.map(summary), retried: again.results.map(summary),
                               stream: streamed }));
  process.exit(0);
})().catch((e) => { console.error(e.message); process.exit(1); });
