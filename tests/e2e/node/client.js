// Makes a decision over gRPC from Node.js with @grpc/grpc-js, then reads it back.
// Usage: node client.js ADDRESS TOKEN PROTO_DIR
const { client, meta, toStruct } = require("./common")(...process.argv.slice(2));

const request = {
  ruleset: "payment-approval",
  idempotency_key: "node-1",
  facts: [{ type: "payment", values: toStruct({
    payment_ref: "PAY-N1", amount: 250, currency: "EUR", beneficiary_iban: "DE89370400440532013000",
    initiated_by: "alice", new_beneficiary: false }) }],
};
client.Decide(request, meta, (err, resp) => {
  if (err) { console.error("Decide failed:", err.code, err.details); process.exit(1); }
  const id = resp.decision.decision_id;
  client.GetDecision({ decision_id: id }, meta, (err2, got) => {
    if (err2) { console.error("GetDecision failed:", err2.code, err2.details); process.exit(1); }
    console.log(JSON.stringify({
      decision_id: id, outcome: got.decision.outcome,
      action: got.decision.decision.fields.action.stringValue, fired: got.decision.fired,
    }));
    process.exit(0);
  });
});
