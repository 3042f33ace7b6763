// What every Node.js client of these tests starts with: the DecisionService client over baton.v1's protos,
// the caller's bearer token as metadata, and facts as google.protobuf.Struct.
// Usage: const { client, meta, toStruct } = require("./common")(ADDRESS, TOKEN, PROTO_DIR);
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const path = require("path");

module.exports = (address, token, protoDir) => {
  const definition = loader.loadSync(path.join(protoDir, "baton/v1/decision.proto"), {
    includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: true,
  });
  const baton = grpc.loadPackageDefinition(definition).baton.v1;
  const client = new baton.DecisionService(address, grpc.credentials.createInsecure());
  const meta = new grpc.Metadata();
  meta.add("authorization", `Bearer ${token}`);
  // google/protobuf/struct.proto comes from protobufjs' bundled copy, whose fields are camelCase
  const toValue = (v) => typeof v === "number" ? { numberValue: v } : typeof v === "boolean" ? { boolValue: v }
    : Array.isArray(v) ? { listValue: { values: v.map(toValue) } } : { stringValue: String(v) };
  const toStruct = (o) => ({ fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toValue(v)])) });
  return { client, meta, toStruct };
};
