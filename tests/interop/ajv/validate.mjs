// AJV, an independent JSON Schema validator, judging instances against the receiver's published
// JSON Schemas: draft 2020-12, strict mode (an unknown keyword in a schema is an error), formats
// asserted in full mode. Reads {"schemas": {key: schema}, "cases": [[key, instance], ...]} on
// stdin; writes [{"valid": bool, "errors": [...]}, ...] on stdout, one entry per case. A schema
// that strict mode refuses is reported as {"schema_error": "..."} for each of its cases.
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv, { mode: "full" });
const compiled = {};
const refused = {};
for (const [key, schema] of Object.entries(input.schemas)) {
  try {
    compiled[key] = ajv.compile(schema);
  } catch (error) {
    refused[key] = String(error.message || error);
  }
}
const out = input.cases.map(([key, instance]) => {
  if (refused[key] !== undefined) return { schema_error: refused[key] };
  const validate = compiled[key];
  const valid = validate(instance);
  return { valid, errors: valid ? [] : validate.errors.map((e) => `${e.instancePath} ${e.message}`) };
});
process.stdout.write(JSON.stringify(out));
