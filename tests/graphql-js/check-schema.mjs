// Checks a GraphQL endpoint's introspection with graphql-js, as clients use it: POSTs the
// full introspection query (every optional field GraphiQL and codegen tools ask for), builds
// a client schema from the answer, validates it, and checks that the schema printed back to
// SDL parses and builds. With --sdl URL it also fetches the service's own SDL and checks that
// it parses, builds and describes the same schema as the introspection (types, fields,
// arguments, defaults, descriptions, deprecations and scalars' specifiedByURL; a type that
// nothing references and only one side lists is a note, not a failure).
//
// Usage: node check-schema.mjs URL [--sdl SDL_URL]
// Exit code: 0 when every check passed, 1 with the errors printed otherwise.

import {
  GraphQLSchema,
  buildClientSchema,
  buildSchema,
  findBreakingChanges,
  findDangerousChanges,
  getIntrospectionQuery,
  getNamedType,
  isInterfaceType,
  isSpecifiedDirective,
  isSpecifiedScalarType,
  isUnionType,
  parse,
  printSchema,
  specifiedDirectives,
  validateSchema,
} from "graphql";

const TIMEOUT_MS = 30_000;

function fail(message) {
  console.error(`check-schema: FAIL: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { url: null, sdl: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--sdl") {
      args.sdl = argv[++i];
      if (!args.sdl) fail("--sdl needs a URL");
    } else if (!args.url) {
      args.url = argv[i];
    } else {
      fail(`unexpected argument ${argv[i]}`);
    }
  }
  if (!args.url) fail("usage: node check-schema.mjs URL [--sdl SDL_URL]");
  return args;
}

async function introspect(url) {
  const query = getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
  });
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json",
    },
    body: JSON.stringify({ query, operationName: "IntrospectionQuery" }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await response.text();
  if (response.status !== 200) fail(`POST ${url}: HTTP ${response.status}: ${text.slice(0, 2000)}`);
  const type = response.headers.get("content-type") ?? "";
  if (!/^application\/(graphql-response\+)?json\b/.test(type)) {
    fail(`POST ${url}: content type ${JSON.stringify(type)}, expected a JSON one`);
  }
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    fail(`POST ${url}: the body is not JSON (${e.message}): ${text.slice(0, 2000)}`);
  }
  if (body.errors !== undefined) fail(`introspection errors: ${JSON.stringify(body.errors, null, 2)}`);
  if (!body.data || !body.data.__schema) fail(`no data.__schema in ${text.slice(0, 2000)}`);
  return body.data;
}

// Changes that make one schema differ from the other, both ways (descriptions aside).
function differences(a, b) {
  return [
    ...findBreakingChanges(a, b),
    ...findDangerousChanges(a, b),
    ...findBreakingChanges(b, a),
    ...findDangerousChanges(b, a),
  ].map((c) => `${c.type}: ${c.description}`);
}

// The names of the types reachable from the root types and the directives' arguments.
function referencedTypes(schema) {
  const seen = new Set();
  const visit = (type) => {
    const named = getNamedType(type);
    if (!named || seen.has(named.name)) return;
    seen.add(named.name);
    const fields = named.getFields ? Object.values(named.getFields()) : [];
    for (const field of fields) {
      visit(field.type);
      for (const arg of field.args ?? []) visit(arg.type);
    }
    for (const i of named.getInterfaces ? named.getInterfaces() : []) visit(i);
    if (isUnionType(named)) named.getTypes().forEach(visit);
    if (isInterfaceType(named) || isUnionType(named)) schema.getPossibleTypes(named).forEach(visit);
  };
  [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()].forEach(visit);
  for (const d of schema.getDirectives()) for (const arg of d.args) visit(arg.type);
  return seen;
}

// The schema as the comparison takes it. The specified directives (@deprecated, @include,
// @skip, @specifiedBy, @oneOf) are this graphql-js's: an SDL that leaves them out gets
// graphql-js's own, which may follow a later spec edition than the server. A type that
// nothing references and `other` lacks is left out with a note: async-graphql's
// introspection lists only the types in use, its SDL every registered one, and the standard
// scalars are implied in SDL.
function comparable(schema, other, where, notes) {
  const config = schema.toConfig();
  const referenced = referencedTypes(schema);
  const types = config.types.filter((t) => {
    if (referenced.has(t.name) || other.getType(t.name) || t.name.startsWith("__")) return true;
    if (!isSpecifiedScalarType(t)) notes.push(`${t.name} is only in ${where}, and nothing references it`);
    return false;
  });
  const directives = [...specifiedDirectives, ...config.directives.filter((d) => !isSpecifiedDirective(d))];
  return new GraphQLSchema({ ...config, types, directives });
}

// What the change finders above do not compare: descriptions, deprecation reasons and
// scalars' specifiedByURL, of every named type, field, argument and enum value.
function annotationDifferences(a, b) {
  const out = [];
  const same = (where, what, x, y) => {
    if ((x ?? null) !== (y ?? null)) out.push(`${where}: ${what} ${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
  };
  const byName = (list) => new Map(list.map((item) => [item.name, item]));
  const members = (where, xs, ys) => {
    const other = byName(ys);
    for (const x of xs) {
      const y = other.get(x.name);
      if (!y) continue;
      same(`${where}.${x.name}`, "description", x.description, y.description);
      same(`${where}.${x.name}`, "deprecation reason", x.deprecationReason, y.deprecationReason);
      if (x.args) members(`${where}.${x.name}`, x.args, y.args ?? []);
    }
  };
  const otherTypes = b.getTypeMap();
  for (const [name, x] of Object.entries(a.getTypeMap())) {
    const y = otherTypes[name];
    if (name.startsWith("__") || isSpecifiedScalarType(x) || !y) continue;
    same(name, "description", x.description, y.description);
    if ("specifiedByURL" in x) same(name, "specifiedByURL", x.specifiedByURL, y.specifiedByURL);
    if (x.getFields) members(name, Object.values(x.getFields()), Object.values(y.getFields?.() ?? {}));
    if (x.getValues) members(name, x.getValues(), y.getValues?.() ?? []);
  }
  return out;
}

function buildOrFail(sdl, what) {
  let document;
  try {
    document = parse(sdl);
  } catch (e) {
    fail(`${what} does not parse: ${e.message}`);
  }
  let schema;
  try {
    schema = buildSchema(sdl);
  } catch (e) {
    fail(`${what} does not build: ${e.message}`);
  }
  const errors = validateSchema(schema);
  if (errors.length) fail(`${what} is not valid:\n${errors.map((e) => `  ${e.message}`).join("\n")}`);
  return { document, schema };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const data = await introspect(args.url);

  let schema;
  try {
    schema = buildClientSchema(data);
  } catch (e) {
    fail(`buildClientSchema: ${e.message}`);
  }
  const errors = validateSchema(schema);
  if (errors.length) {
    fail(`validateSchema:\n${errors.map((e) => `  ${e.message}`).join("\n")}`);
  }
  const printed = printSchema(schema);
  buildOrFail(printed, "printSchema of the introspection");

  const types = Object.keys(schema.getTypeMap()).filter((n) => !n.startsWith("__"));
  const query = schema.getQueryType();
  const mutation = schema.getMutationType();
  console.log(
    `check-schema: ok: ${args.url}: ${types.length} types, ` +
      `${query ? Object.keys(query.getFields()).length : 0} query fields, ` +
      `${mutation ? Object.keys(mutation.getFields()).length : 0} mutation fields, ` +
      `${schema.getDirectives().length} directives`,
  );

  if (args.sdl) {
    const response = await fetch(args.sdl, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const sdl = await response.text();
    if (response.status !== 200) fail(`GET ${args.sdl}: HTTP ${response.status}: ${sdl.slice(0, 2000)}`);
    const served = buildOrFail(sdl, `the SDL at ${args.sdl}`).schema;
    const notes = [];
    const a = comparable(schema, served, "the introspection", notes);
    const b = comparable(served, schema, "the SDL", notes);
    for (const note of notes) console.log(`check-schema: note: ${note}`);
    const diff = [...differences(a, b), ...annotationDifferences(a, b)];
    if (diff.length) {
      fail(`the SDL at ${args.sdl} differs from the introspection:\n${diff.map((d) => `  ${d}`).join("\n")}`);
    }
    console.log(`check-schema: ok: ${args.sdl} describes the same schema`);
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
