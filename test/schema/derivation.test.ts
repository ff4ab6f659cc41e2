import { glueColumns, hiveType, listSchemas, loadModel, openSearchIndexTemplate, openSearchMappingSize, parquetColumns, projectionParameters, firehoseDataPrefix, readSchema, typeScriptTypes } from '../../lib/schema';
import { describeSchema, SchemaDerivationError } from '../../lib/schema/model';
import { loadConfig } from '../../lib/config';

// The pipelines of cdk.json and every schema in schemas/: a pipeline a user adds is checked as the shipped ones are.
const CONFIGURED = Object.keys(loadConfig().pipelines).sort();
const PIPELINES = [...new Set([...CONFIGURED, ...listSchemas()])].sort();

describe('schema derivation', () => {
  test('every configured pipeline has a schema', () => {
    expect(CONFIGURED.length).toBeGreaterThan(0);
    expect(CONFIGURED.filter((p) => !listSchemas().includes(p))).toEqual([]);
  });

  test.each(PIPELINES)('%s: Glue columns, Parquet columns and OpenSearch mapping name the same fields', (pipeline) => {
    const model = loadModel(pipeline);
    const glue = glueColumns(model);
    const parquet = parquetColumns(model);
    const mapping = openSearchIndexTemplate(model) as { template: { mappings: { properties: Record<string, unknown> } } };
    expect(parquet.map((c) => c.name)).toEqual(glue.columns.map((c) => c.name));
    // OpenSearch documents keep the partition fields (they are not in the path there).
    const partitionFields = model.partitionKeys.map((k) => k.name);
    expect(Object.keys(mapping.template.mappings.properties).filter((n) => !partitionFields.includes(n)))
      .toEqual(glue.columns.map((c) => c.name));
    for (const c of glue.columns) {
      expect(c.name).toMatch(/^[a-z_][a-z0-9_]*$/);
      expect(partitionFields).not.toContain(c.name);
    }
    expect(glue.partitionKeys.map((k) => k.name)).toEqual([...model.extensions.partitionFields, 'year', 'month', 'day', 'hour']);
  });

  test('iot: Hive types follow the rules (bounded integers → int, numbers → double, date-time → timestamp, lat/lon → struct)', () => {
    const { columns } = glueColumns(loadModel('iot'));
    const type = (name: string) => columns.find((c) => c.name === name)?.type;
    expect(type('event_id')).toBe('string');
    expect(type('event_time')).toBe('timestamp');
    expect(type('temperature_c')).toBe('double');
    expect(type('battery_pct')).toBe('int');
    expect(type('uptime_s')).toBe('bigint'); // no upper bound → bigint
    expect(type('alert_code')).toBe('string'); // enum → string
    expect(type('location')).toBe('struct<lat:double,lon:double>');
    expect(type('tags')).toBe('array<string>');
    expect(type('event_type')).toBeUndefined(); // a partition key, not a column
    expect(type('sluice')).toBe('struct<arrival_time:timestamp,processed_at:timestamp,source:string,shard_id:string,sequence_number:string,schema_version:string,quality_score:double>');
  });

  test('iot: OpenSearch mapping uses keyword, date, geo_point and numeric types', () => {
    const props = (openSearchIndexTemplate(loadModel('iot')) as { template: { mappings: { properties: Record<string, Record<string, unknown>> } } })
      .template.mappings.properties;
    expect(props.event_id.type).toBe('keyword');
    expect(props.event_type.type).toBe('keyword');
    expect(props.event_time.type).toBe('date');
    expect(props.location.type).toBe('geo_point');
    expect(props.temperature_c.type).toBe('double');
    expect(props.battery_pct.type).toBe('integer');
    expect(props.uptime_s.type).toBe('long');
  });

  test('transactions: PII masks keep string columns, money adds exact minor units', () => {
    const model = loadModel('transactions');
    const { columns } = glueColumns(model);
    expect(columns.find((c) => c.name === 'amount_minor')?.type).toBe('bigint');
    expect(columns.find((c) => c.name === 'email')?.type).toBe('string');
    expect(columns.find((c) => c.name === 'payment_method')?.type).toBe('struct<type:string,card_brand:string,card_number:string,wallet:string>');
    expect(model.extensions.pii).toEqual({ 'payment_method.card_number': 'last4', email: 'hash', ip_address: 'redact' });
    const mapping = openSearchIndexTemplate(model) as { template: { mappings: { properties: Record<string, Record<string, unknown>> } } };
    expect(mapping.template.mappings.properties.ip_address.type).toBe('keyword'); // masked: no longer an IP
  });

  test('app-events: a Hive reserved word is mapped to its column name; a string map becomes map<string,string>', () => {
    const model = loadModel('app-events');
    const { columns } = glueColumns(model);
    expect(columns.map((c) => c.name)).toContain('event_timestamp');
    expect(columns.map((c) => c.name)).not.toContain('timestamp');
    expect(columns.find((c) => c.name === 'attributes')?.type).toBe('map<string,string>');
    expect(typeScriptTypes(model)).toContain('  timestamp: string;');
    expect(typeScriptTypes(model)).toContain('  event_timestamp: string;');
  });

  test.each(PIPELINES)('%s: the Firehose prefix and the projection template are the same layout', (pipeline) => {
    const model = loadModel(pipeline);
    const template = projectionParameters(model, 'bucket')['storage.location.template'];
    const asFirehose = template.replace('s3://bucket/', '').replace(/\$\{([a-z_]+)\}/g, '!{partitionKeyFromLambda:$1}');
    expect(asFirehose).toBe(firehoseDataPrefix(model));
    // The schema's partition fields first, in their order, then the time partitions.
    const keys = [...model.extensions.partitionFields, 'year', 'month', 'day', 'hour'];
    expect(template).toBe(`s3://bucket/data/${pipeline}/${keys.map((k) => `${k}=\${${k}}/`).join('')}`);
  });

  test('partition projection enumerates enum partition values and bounds time', () => {
    const params = projectionParameters(loadModel('clickstream'), 'b');
    expect(params['projection.event_type.type']).toBe('enum');
    expect(params['projection.event_type.values']).toBe('page_view,click,scroll,session_start,session_end,add_to_cart');
    expect(params['projection.month.digits']).toBe('2');
    expect(params['projection.year.range']).toBe('2000,2100');
  });

  test('hive types of nested arrays and maps', () => {
    expect(hiveType({ kind: 'array', items: { kind: 'struct', geoPoint: false, fields: [{ name: 'a', jsonKey: 'a', required: true, type: { kind: 'bigint' } }] } }))
      .toBe('array<struct<a:bigint>>');
    expect(hiveType({ kind: 'map', values: { kind: 'double' } })).toBe('map<string,double>');
  });
});

describe('schemas the derivation cannot represent fail with the schema path', () => {
  const base = () => JSON.parse(JSON.stringify(readSchema('iot'))) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

  // iot has no money rule: give it one on temperature_c, with the minor-units column under test.
  const withMinorUnits = (s: Record<string, any>, minorUnitsField: string) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    s.properties.currency = { type: 'string' };
    s['x-sluice'].money = { amountField: 'temperature_c', currencyField: 'currency', minorUnitsField, defaultCurrency: 'EUR' };
  };

  const cases: Array<[string, (s: Record<string, any>) => void, RegExp]> = [ // eslint-disable-line @typescript-eslint/no-explicit-any
    ['oneOf across types', (s) => { s.properties.reading = { oneOf: [{ type: 'string' }, { type: 'number' }] }; }, /at \/properties\/reading: keyword "oneOf"/],
    ['a type list mixing types', (s) => { s.properties.reading = { type: ['string', 'number'] }; }, /at \/properties\/reading: type \["string","number"\] mixes types/],
    ['names that collide once lower-cased', (s) => { s.properties.Device_ID = { type: 'string' }; }, /at \/properties\/Device_ID: "Device_ID" and "device_id" are the same column "device_id"/],
    ['an additionalProperties map without a value schema', (s) => { s.properties.extras = { type: 'object', additionalProperties: true }; }, /at \/properties\/extras: an object needs "properties"/],
    ['an array without items', (s) => { s.properties.readings = { type: 'array' }; }, /at \/properties\/readings: an array needs an "items" schema/],
    ['a Hive reserved word', (s) => { s.properties.date = { type: 'string' }; }, /at \/properties\/date: "date" is a reserved word in Athena DDL/],
    ['a name Glue cannot hold', (s) => { s.properties['temp-f'] = { type: 'number' }; },
      /at \/properties\/temp-f: "temp-f", which cannot be a Glue column name \(lower-case letters, digits and "_" only\); map it to another column name with x-sluice\.columns$/],
    // Letters, digits and "_" only, yet no Glue name: the message says which rule it breaks.
    ['a name starting with a digit', (s) => { s.properties['3ds_result'] = { type: 'string' }; },
      /at \/properties\/3ds_result: "3ds_result", which starts with "3", and a Glue column name starts with a letter or "_"; map it to another column name with x-sluice\.columns$/],
    ['a nested name starting with a digit', (s) => { s.properties.location.properties['2d'] = { type: 'boolean' }; },
      /at \/properties\/location\/properties\/2d: "2d", which starts with "2", and a Glue column name starts with a letter or "_"; rename the field$/],
    ['a name longer than Glue takes', (s) => { s.properties['x'.repeat(300)] = { type: 'string' }; },
      new RegExp(`at /properties/${'x'.repeat(300)}: "${'x'.repeat(32)}…", which is 300 characters long, and a Glue column name has at most 255; map it`)],
    ['a property renamed to a name starting with a digit', (s) => { s['x-sluice'].columns = { alert_code: '1st_alert' }; },
      /at \/x-sluice\/columns\/alert_code: x-sluice\.columns maps "alert_code" to "1st_alert", which starts with "1", and a Glue column name starts with a letter or "_"; choose another column name$/],
    ['money minor units starting with a digit', (s) => withMinorUnits(s, '2_minor'),
      /at \/x-sluice\/money\/minorUnitsField: "2_minor", which starts with "2", and a Glue column name starts with a letter or "_"; choose another name$/],
    // Other x-sluice sections refuse a key they do not know; money did not, and a misspelt required key went unnamed.
    ['an unknown key in money', (s) => { withMinorUnits(s, 'temperature_minor'); s['x-sluice'].money.roundng = 'half-up'; },
      /at \/x-sluice\/money\/roundng: unknown key; allowed: amountField, currencyField, minorUnitsField, defaultCurrency$/],
    ['a misspelt optional key in money', (s) => {
      withMinorUnits(s, 'temperature_minor');
      s['x-sluice'].money.defaultCurency = s['x-sluice'].money.defaultCurrency;
      delete s['x-sluice'].money.defaultCurrency;
      s.properties.currency = { type: 'string', enum: ['EUR'] };
      s.required.push('currency');
    }, /at \/x-sluice\/money\/defaultCurency: unknown key; allowed: /],
    ['a misspelt required key in money', (s) => {
      withMinorUnits(s, 'temperature_minor');
      s['x-sluice'].money.amountFeild = s['x-sluice'].money.amountField;
      delete s['x-sluice'].money.amountField;
    }, /at \/x-sluice\/money\/amountFeild: unknown key; allowed: amountField, currencyField, minorUnitsField, defaultCurrency$/],
    ['a required money key left out', (s) => { withMinorUnits(s, 'temperature_minor'); delete s['x-sluice'].money.currencyField; },
      /at \/x-sluice\/money: "currencyField" is missing: money must be \{amountField, currencyField, minorUnitsField, defaultCurrency\?\} with string values$/],
    ['a money key that is no string', (s) => { withMinorUnits(s, 'temperature_minor'); s['x-sluice'].money.minorUnitsField = 3; },
      /at \/x-sluice\/money\/minorUnitsField: must be a non-empty string, not 3$/],
    ['no x-sluice keyword', (s) => { delete s['x-sluice']; }, /at \/x-sluice: missing/],
    ['an x-sluice that is not an object', (s) => { s['x-sluice'] = 'oops'; }, /at \/x-sluice: must be an object \{version, idField, eventTimeField, partitionFields, pii\}, not "oops"$/],
    ['a type JSON Schema does not have', (s) => { s.properties.temperature_c = { type: 'float' }; },
      /at \/properties\/temperature_c: type "float" is not supported: use one of "string", "integer", "number", "boolean", "object", "array" \(or a list of one of them and "null"\)$/],
    ['an event-time field that is not a date-time', (s) => { s['x-sluice'].eventTimeField = 'device_id'; }, /at \/properties\/device_id: the eventTimeField must be/],
    ['a PII mask on a number', (s) => { s['x-sluice'].pii = { temperature_c: 'hash' }; }, /at \/x-sluice\/pii\/temperature_c: PII mask "hash" applies to plain strings only$/],
    ['a PII mask on a date-time', (s) => { s.properties.seen_at = { type: 'string', format: 'date-time' }; s['x-sluice'].pii = { seen_at: 'drop' }; },
      /at \/x-sluice\/pii\/seen_at: PII mask "drop" applies to plain strings only \(a date or date-time is a column of its own type\)/],
    ['a date partition field', (s) => { s.properties.shift_date = { type: 'string', format: 'date' }; s.required.push('shift_date'); s['x-sluice'].partitionFields = ['shift_date']; },
      /at \/properties\/shift_date: a partition field must be a plain string \(not a date or date-time: the event time gives the time partitions\)/],
    ['a PII mask on a field inside an array of objects', (s) => {
      s.properties.readings = { type: 'array', items: { type: 'object', additionalProperties: false, properties: { sensor: { type: 'string' } } } };
      s['x-sluice'].pii = { 'readings.sensor': 'hash' };
    }, /at \/x-sluice\/pii\/readings\.sensor: PII field "readings\.sensor" goes through "readings", an array: a path through an array is not supported \(masks reach top-level fields and fields of nested objects only\); move the field out of it, or mask it before sending$/],
    ['a PII mask on a field inside an array of a nested object', (s) => {
      s.properties.site = { type: 'object', additionalProperties: false, properties: { staff: { type: 'array', items: { type: 'object', additionalProperties: false, properties: { email: { type: 'string' } } } } } };
      s['x-sluice'].pii = { 'site.staff.email': 'hash' };
    }, /at \/x-sluice\/pii\/site\.staff\.email: PII field "site\.staff\.email" goes through "site\.staff", an array: a path through an array is not supported/],
    ['a PII mask on a value of a map', (s) => {
      s.properties.labels = { type: 'object', additionalProperties: { type: 'string' } };
      s['x-sluice'].pii = { 'labels.owner': 'redact' };
    }, /at \/x-sluice\/pii\/labels\.owner: PII field "labels\.owner" goes through "labels", a map: a path through a map is not supported/],
    ['a PII mask on a nested field the schema does not have', (s) => { s['x-sluice'].pii = { 'location.latitude': 'hash' }; },
      /at \/x-sluice\/pii\/location\.latitude: PII field "location\.latitude" is not a property of the schema \(nested fields are written a\.b\)$/],
    ['an unknown PII mask', (s) => { s['x-sluice'].pii = { device_id: 'rot13' }; }, /at \/x-sluice\/pii\/device_id: mask "rot13" is not one of/],
    ['a nested object open to extra keys', (s) => { s.properties.location.additionalProperties = true; },
      /at \/properties\/location\/additionalProperties: an object with properties must set "additionalProperties": false/],
    ['a nested object that leaves additionalProperties out', (s) => { delete s.properties.location.additionalProperties; },
      /at \/properties\/location: an object with properties must set "additionalProperties": false/],
    ['a nested object with properties and a value schema', (s) => { s.properties.location.additionalProperties = { type: 'number' }; },
      /at \/properties\/location\/additionalProperties: an object with properties must set "additionalProperties": false/],
    ['a record that leaves additionalProperties out', (s) => { delete s.additionalProperties; },
      /at \/: an object with properties must set "additionalProperties": false/],
    ['a record open to extra keys', (s) => { s.additionalProperties = true; },
      /at \/additionalProperties: an object with properties must set "additionalProperties": false/],
    ['a record with patternProperties', (s) => { s.patternProperties = { '^x_': { type: 'string' } }; }, /at \/: keyword "patternProperties"/],
    ['a record with allOf', (s) => { s.allOf = [{ required: ['device_model'] }]; }, /at \/: keyword "allOf"/],
    ['a record with oneOf', (s) => { s.oneOf = [{ required: ['device_model'] }, { required: ['alert_code'] }]; }, /at \/: keyword "oneOf"/],
    ['a record with unevaluatedProperties', (s) => { s.unevaluatedProperties = true; }, /at \/: keyword "unevaluatedProperties"/],
    ['$ref', (s) => { s.properties.loc2 = { $ref: '#/properties/location' }; }, /at \/properties\/loc2: keyword "\$ref"/],
    ['an optional partition field', (s) => { s.required = s.required.filter((r: string) => r !== 'event_type'); }, /the partition field "event_type" must be required/],
    ['a schema of another draft', (s) => { s.$schema = 'http://json-schema.org/draft-07/schema#'; }, /at \/\$schema: must be/],
    ['the reserved enrichment column', (s) => { s.properties.sluice = { type: 'string' }; }, /at \/properties\/sluice: "sluice" is reserved/],
    ['money minor units in the enrichment column', (s) => withMinorUnits(s, 'sluice'),
      /at \/x-sluice\/money\/minorUnitsField: "sluice" is reserved for the enrichment/],
    ['money minor units on an existing property', (s) => withMinorUnits(s, 'humidity_pct'),
      /at \/x-sluice\/money\/minorUnitsField: "humidity_pct" already exists/],
    ['money minor units on a renamed column', (s) => { s['x-sluice'].columns = { alert_code: 'alert' }; withMinorUnits(s, 'alert'); },
      /at \/x-sluice\/money\/minorUnitsField: "alert" already exists/],
    ['money minor units on the JSON key of a renamed column', (s) => { s['x-sluice'].columns = { alert_code: 'alert' }; withMinorUnits(s, 'alert_code'); },
      /at \/x-sluice\/money\/minorUnitsField: "alert_code" already exists/],
    ['money minor units differing from a column only in case', (s) => withMinorUnits(s, 'Humidity_Pct'),
      /at \/x-sluice\/money\/minorUnitsField: "Humidity_Pct", which cannot be a Glue column name \(lower-case letters, digits and "_" only\); choose another name$/],
    ['money minor units named with a Hive reserved word', (s) => withMinorUnits(s, 'date'),
      /at \/x-sluice\/money\/minorUnitsField: "date" is a reserved word in Athena DDL/],
    ['a property named like a time partition key', (s) => { s.properties.hour = { type: 'integer' }; },
      /at \/properties\/hour: column "hour" collides with the lake's time partition key .*; map "hour" to another column name with x-sluice\.columns/],
    ['a property named like a time partition key in another case', (s) => { s.properties.Year = { type: 'integer' }; },
      /at \/properties\/Year: column "year" collides with the lake's time partition key .*; map "Year" to another column name with x-sluice\.columns/],
    ['a property renamed onto a time partition key', (s) => { s['x-sluice'].columns = { alert_code: 'day' }; },
      /at \/x-sluice\/columns\/alert_code: x-sluice\.columns maps "alert_code" to "day", which collides with the lake's time partition key .*; choose another column name/],
    ['a partition field named like a time partition key', (s) => {
      s.properties.Month = s.properties.event_type; s.required.push('Month'); s['x-sluice'].partitionFields = ['Month'];
    }, /at \/properties\/Month: column "month" collides with the lake's time partition key/],
    ['money minor units named like a time partition key', (s) => withMinorUnits(s, 'hour'),
      /at \/x-sluice\/money\/minorUnitsField: "hour" collides with the lake's time partition key/],
    ['a property renamed onto a partition column', (s) => { s['x-sluice'].columns = { alert_code: 'event_type' }; },
      /at \/properties\/alert_code: "alert_code" and "event_type" are the same column "event_type" after the x-sluice\.columns renames/],
    ['a property named like a member every object inherits', (s) => { s.properties.constructor = { type: 'string' }; },
      /at \/properties\/constructor: "constructor" is named like a member every JavaScript object inherits/],
    ['a nested property named like an inherited member', (s) => {
      Object.defineProperty(s.properties.location.properties, '__proto__', { value: { type: 'string' }, enumerable: true, writable: true, configurable: true });
    },
      /at \/properties\/location\/properties\/__proto__: "__proto__" is named like a member/],
    ['a property renamed to an inherited member', (s) => { s['x-sluice'].columns = { alert_code: '__proto__' }; },
      /at \/x-sluice\/columns\/alert_code: x-sluice\.columns maps "alert_code" to "__proto__", which is named like a member every JavaScript object inherits/],
    ['money minor units named like an inherited member', (s) => withMinorUnits(s, 'constructor'),
      /at \/x-sluice\/money\/minorUnitsField: "constructor" is named like a member every JavaScript object inherits/],
    ['a PII mask on the entity field', (s) => { s['x-sluice'].pii = { device_id: 'hash' }; },
      /at \/x-sluice\/pii\/device_id: the entityField "device_id" is stored unmasked .*; choose another entityField or drop the mask/],
    ['a PII mask on the id field', (s) => { s['x-sluice'].pii = { event_id: 'redact' }; },
      /at \/x-sluice\/pii\/event_id: the id, event-time and partition fields cannot be masked/],
    ['a nullable id field', (s) => { s.properties.event_id.type = ['string', 'null']; },
      /at \/properties\/event_id\/type: the idField "event_id" must not admit null/],
    ['a nullable event-time field', (s) => { s.properties.event_time.type = ['null', 'string']; },
      /at \/properties\/event_time\/type: the eventTimeField "event_time" must not admit null/],
    ['a nullable partition field', (s) => { s.properties.event_type.type = ['string', 'null']; },
      /at \/properties\/event_type\/type: the partition field "event_type" must not admit null/],
    ['a nullable partition enum that lists null', (s) => { s.properties.event_type.type = ['string', 'null']; s.properties.event_type.enum.push(null); },
      /at \/properties\/event_type\/type: the partition field "event_type" must not admit null/],
    // JSON Schema asks a value to be in the enum and of the type: null in the enum of a type without it passes nothing.
    ['null in the enum of a field whose type does not admit it', (s) => { s.properties.alert_code.enum.push(null); },
      /at \/properties\/alert_code\/enum\/\d+: null is null, which the field's type "string" does not admit \(to allow it, write "type": \["string", "null"\]\), so no record can carry it/],
    ['null in the enum of a field without a type', (s) => { s.properties.alert_code = { enum: ['low', null] }; },
      /at \/properties\/alert_code\/enum: lists null, but the field has no "type" to say it may be null: give it one, e\.g\. "type": \["string", "null"\]$/],
    ['a partition field listed twice', (s) => { s['x-sluice'].partitionFields = ['event_type', 'event_type']; },
      /at \/x-sluice\/partitionFields\/1: "event_type" is listed twice; list each partition field once/],
    ['a partition enum value with no partition name', (s) => { s.properties.event_type.enum.push('!!!'); },
      /at \/properties\/event_type\/enum: "!!!" leaves no partition name once sanitized .*; remove it or partition by another field/],
    ['partition enum values differing only in case', (s) => { s.properties.event_type.enum.push('Alert'); },
      /at \/properties\/event_type\/enum: "alert" and "Alert" both become the partition "alert"/],
    ['partition enum values that sanitize alike', (s) => { s.properties.event_type.enum = ['a/b', 'a b']; },
      /at \/properties\/event_type\/enum: "a\/b" and "a b" both become the partition "a_b"/],
    ['a partition const with no partition name', (s) => { s.properties.event_type = { type: 'string', const: '***' }; },
      /at \/properties\/event_type\/const: "\*\*\*" leaves no partition name/],
    ['an integer entity field', (s) => { s['x-sluice'].entityField = 'battery_pct'; },
      /at \/properties\/battery_pct: the entityField "battery_pct" must be a string/],
    ['a struct entity field', (s) => { s['x-sluice'].entityField = 'location'; },
      /at \/properties\/location: the entityField "location" must be a string/],
    ['an optional currency without a default currency', (s) => { withMinorUnits(s, 'temperature_minor'); delete s['x-sluice'].money.defaultCurrency; },
      /at \/x-sluice\/money: "currency" is optional, so money\.defaultCurrency is required/],
    // A record with "currency": null passes validation, and the transform would fail it for want of a currency.
    ['a nullable currency without a default currency', (s) => {
      withMinorUnits(s, 'temperature_minor');
      s.properties.currency = { type: ['string', 'null'] };
      s.required.push('currency');
      delete s['x-sluice'].money.defaultCurrency;
    }, /at \/x-sluice\/money: "currency" admits null, so money\.defaultCurrency is required/],
    ['a lower-case default currency', (s) => { withMinorUnits(s, 'temperature_minor'); s['x-sluice'].money.defaultCurrency = 'usd'; },
      /at \/x-sluice\/money\/defaultCurrency: "usd" is not an ISO 4217 currency code; write three capital letters/],
    ['a default currency that is no code', (s) => { withMinorUnits(s, 'temperature_minor'); s['x-sluice'].money.defaultCurrency = 'dollars'; },
      /at \/x-sluice\/money\/defaultCurrency: "dollars" is not an ISO 4217 currency code/],
    // Such a record passes validation and then fails the transform, and its replay fails the same way.
    ['a currency enum listing a value that is no ISO 4217 code', (s) => {
      withMinorUnits(s, 'temperature_minor');
      s.properties.currency = { type: ['string', 'null'], enum: ['EUR', 'usd', 'EURO', null] };
    }, /at \/properties\/currency: "usd", "EURO" are not ISO 4217 currency codes, which the transform needs to compute money\.minorUnitsField/],
    ['a currency const that is no ISO 4217 code', (s) => { withMinorUnits(s, 'temperature_minor'); s.properties.currency = { const: 'euro' }; },
      /at \/properties\/currency: "euro" is not an ISO 4217 currency code/],
    ['a property renamed to a name Glue cannot hold', (s) => { s['x-sluice'].columns = { alert_code: 'Bad-Name' }; },
      /at \/x-sluice\/columns\/alert_code: x-sluice\.columns maps "alert_code" to "Bad-Name", which cannot be a Glue column name .*; choose another column name$/],
    ['a property renamed to a Hive reserved word', (s) => { s['x-sluice'].columns = { alert_code: 'table' }; },
      /at \/x-sluice\/columns\/alert_code: x-sluice\.columns maps "alert_code" to "table", which is a reserved word in Athena DDL; choose another column name$/],
    ['a column mapping for a key the schema does not have', (s) => { s['x-sluice'].columns = { alert: 'alert_kind' }; },
      /at \/x-sluice\/columns\/alert: "alert" is not a top-level property of the schema/],
    ['a column mapping for a nested field', (s) => { s['x-sluice'].columns = { 'location.lat': 'latitude' }; },
      /at \/x-sluice\/columns\/location\.lat: "location\.lat" is not a top-level property of the schema; x-sluice\.columns renames top-level properties only \(nested fields keep their keys, lower-cased\)/],
    ['money minor units on a partition column', (s) => withMinorUnits(s, 'event_type'),
      /at \/x-sluice\/money\/minorUnitsField: "event_type" already exists/],
    // Rules no value can pass, and listed values the field's own rules refuse: every record (or every generated one) would fail.
    ['a minimum above the maximum', (s) => { s.properties.battery_pct.minimum = 10; s.properties.battery_pct.maximum = 1; },
      /at \/properties\/battery_pct\/minimum: minimum 10 is greater than maximum 1: no value can pass/],
    ['an exclusiveMinimum equal to the maximum', (s) => { s.properties.temperature_c = { type: 'number', exclusiveMinimum: 5, maximum: 5 }; },
      /at \/properties\/temperature_c\/exclusiveMinimum: exclusiveMinimum 5 is equal to maximum 5: no value can pass/],
    ['integer bounds with no integer between', (s) => { s.properties.battery_pct = { type: 'integer', minimum: 1.2, maximum: 1.8 }; },
      /at \/properties\/battery_pct: no integer lies within minimum 1\.2 and maximum 1\.8/],
    ['bounds with no multiple of multipleOf between', (s) => { s.properties.battery_pct = { type: 'integer', minimum: 1, maximum: 9, multipleOf: 10 }; },
      /at \/properties\/battery_pct\/multipleOf: no multiple of 10 lies within minimum 1 and maximum 9/],
    ['a minLength above the maxLength', (s) => { s.properties.device_model.minLength = 65; },
      /at \/properties\/device_model\/minLength: minLength 65 is greater than maxLength 64: no value can pass/],
    ['a minItems above the maxItems', (s) => { s.properties.tags.minItems = 17; },
      /at \/properties\/tags\/minItems: minItems 17 is greater than maxItems 16: no value can pass/],
    ['a minProperties above the maxProperties', (s) => { Object.assign(s.properties.location, { minProperties: 2, maxProperties: 1 }); },
      /at \/properties\/location\/minProperties: minProperties 2 is greater than maxProperties 1/],
    ['an enum value of another type than the field', (s) => { s.properties.battery_pct.enum = [1, 'two']; },
      /at \/properties\/battery_pct\/enum\/1: "two" is not an integer, the field's type, so no record can carry it/],
    ['an enum value the field\'s pattern refuses', (s) => { s.properties.device_id.enum = ['dev-00000001', 'DEV-2']; },
      /at \/properties\/device_id\/enum\/1: "DEV-2" does not match the field's pattern "\^dev-\[0-9a-f\]\{8\}\$", so no record can carry it/],
    ['an enum value outside the field\'s bounds', (s) => { s.properties.battery_pct.enum = [50, 101]; },
      /at \/properties\/battery_pct\/enum\/1: 101 is outside the field's maximum 100/],
    ['a const longer than the maxLength', (s) => { s.properties.device_model.const = 'x'.repeat(65); },
      /at \/properties\/device_model\/const: "x{65}" is 65 characters long, longer than the field's maxLength 64/],
    ['an example the field\'s pattern refuses', (s) => { s.properties.device_id.examples.push('DEV-1'); },
      /at \/properties\/device_id\/examples\/8: "DEV-1" does not match the field's pattern "\^dev-\[0-9a-f\]\{8\}\$", so generated records would fail validation/],
    ['an example the field\'s format refuses', (s) => { s.properties.client_ip = { type: 'string', format: 'ipv6', examples: ['10.0.0.1'] }; },
      /at \/properties\/client_ip\/examples\/0: "10\.0\.0\.1" is not a valid "ipv6" \(the field's format\)/],
    ['a pattern that is no regular expression', (s) => { s.properties.device_id.pattern = '^dev-[0-9'; },
      /at \/properties\/device_id\/pattern: "\^dev-\[0-9" is not a regular expression/],
  ];

  test('the money rule the minor-units cases start from is itself valid', () => {
    const schema = base();
    withMinorUnits(schema, 'temperature_minor');
    expect(describeSchema('iot', schema).tableColumns.find((c) => c.name === 'temperature_minor')?.type).toEqual({ kind: 'bigint' });
  });

  test('a property renamed away from a time partition key is a column like any other', () => {
    const schema = base();
    schema.properties.hour = { type: 'integer', minimum: 0, maximum: 23 };
    schema['x-sluice'].columns = { hour: 'event_hour' };
    const model = describeSchema('iot', schema);
    expect(model.tableColumns.find((c) => c.jsonKey === 'hour')).toMatchObject({ name: 'event_hour', type: { kind: 'int' } });
    expect(glueColumns(model).partitionKeys.map((k) => k.name)).toEqual(['event_type', 'year', 'month', 'day', 'hour']);
  });

  test('a nullable field that is not the id, event time or a partition field stays a column', () => {
    const schema = base();
    schema.properties.device_model.type = ['string', 'null'];
    const model = describeSchema('iot', schema);
    expect(model.inputColumns.find((c) => c.jsonKey === 'device_model')).toMatchObject({ type: { kind: 'string' }, nullable: true });
    expect(model.inputColumns.find((c) => c.jsonKey === 'device_id')?.nullable).toBeUndefined();
  });

  test('a nullable enum that lists null is accepted: a nullable string column with the listed strings, in every artifact', () => {
    const schema = base();
    schema.properties.loyalty_tier = { type: ['string', 'null'], enum: ['bronze', 'silver', 'gold', null] };
    schema.required.push('loyalty_tier');
    const model = describeSchema('iot', schema);
    expect(model.inputColumns.find((c) => c.jsonKey === 'loyalty_tier')).toMatchObject({ type: { kind: 'string', enum: ['bronze', 'silver', 'gold'] }, nullable: true });
    expect(glueColumns(model).columns.find((c) => c.name === 'loyalty_tier')?.type).toBe('string');
    expect(parquetColumns(model).find((c) => c.name === 'loyalty_tier')?.type).toBe('VARCHAR');
    const props = (openSearchIndexTemplate(model) as { template: { mappings: { properties: Record<string, Record<string, unknown>> } } }).template.mappings.properties;
    expect(props.loyalty_tier).toEqual({ type: 'keyword', ignore_above: 1024 });
    expect(typeScriptTypes(model)).toContain('  loyalty_tier: "bronze" | "silver" | "gold" | null;');
  });

  test('a field whose type admits null but whose enum does not list it refuses null: not nullable, and its type says so', () => {
    const schema = base();
    schema.properties.loyalty_tier = { type: ['string', 'null'], enum: ['bronze', 'silver'] };
    schema.properties.note = { type: ['string', 'null'] };
    const model = describeSchema('iot', schema);
    expect(model.inputColumns.find((c) => c.jsonKey === 'loyalty_tier')?.nullable).toBeUndefined();
    expect(typeScriptTypes(model)).toContain('  loyalty_tier?: "bronze" | "silver";');
    expect(typeScriptTypes(model)).toContain('  note?: string | null;');
  });

  test('array items and map values that admit null are typed with | null; those that do not, without', () => {
    const schema = base();
    schema.properties.readings = { type: 'array', items: { type: ['number', 'null'] } };
    schema.properties.tags = { type: 'array', items: { type: ['string', 'null'], enum: ['a', 'b', null] } };
    schema.properties.labels = { type: 'object', additionalProperties: { type: ['string', 'null'] } };
    schema.properties.codes = { type: 'array', items: { type: ['string', 'null'], enum: ['a', 'b'] } };
    schema.properties.counts = { type: 'object', additionalProperties: { type: 'integer' } };
    const model = describeSchema('iot', schema);
    expect(model.inputColumns.find((c) => c.jsonKey === 'readings')?.type).toEqual({ kind: 'array', items: { kind: 'double' }, itemsNullable: true });
    expect(model.inputColumns.find((c) => c.jsonKey === 'codes')?.type).toEqual({ kind: 'array', items: { kind: 'string', enum: ['a', 'b'] } });
    const types = typeScriptTypes(model);
    expect(types).toContain('  readings?: Array<number | null>;');
    expect(types).toContain('  tags?: Array<"a" | "b" | null>;');
    expect(types).toContain('  labels?: Record<string, string | null>;');
    expect(types).toContain('  codes?: Array<"a" | "b">;');
    expect(types).toContain('  counts?: Record<string, number>;');
    // Nullable or not, the columns are the same.
    expect(glueColumns(model).columns.find((c) => c.name === 'readings')?.type).toBe('array<double>');
    expect(glueColumns(model).columns.find((c) => c.name === 'labels')?.type).toBe('map<string,string>');
  });

  test('an optional, nullable string entity field is accepted (records without it have no last-seen item)', () => {
    const schema = base();
    schema.properties.device_id.type = ['string', 'null'];
    schema.required = schema.required.filter((r: string) => r !== 'device_id');
    expect(describeSchema('iot', schema).extensions.entityField).toBe('device_id');
  });

  // iot's mapping has 26 fields (a text string counts twice: itself and its .keyword sub-field).
  const withSearchFields = (s: Record<string, any>, texts: number, keywords: number) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    for (let i = 0; i < texts; i++) s.properties[`text_${i}`] = { type: 'string' };
    for (let i = 0; i < keywords; i++) s.properties[`code_${i}`] = { type: 'string', maxLength: 8 };
  };
  // A chain of objects `levels` deep around one string leaf: the leaf is levels + 1 deep in the mapping.
  const withNesting = (s: Record<string, any>, levels: number) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    let node: object = { type: 'string', maxLength: 8 };
    for (let i = 0; i < levels; i++) node = { type: 'object', additionalProperties: false, properties: { [i === 0 ? 'leaf' : 'n']: node } };
    s.properties.nested = node;
  };
  const searchFailure = (mutate: (s: Record<string, any>) => void): Error => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const schema = base();
    mutate(schema);
    const model = describeSchema('iot', schema);
    try {
      openSearchIndexTemplate(model);
    } catch (e) {
      return e as Error;
    }
    throw new Error('openSearchIndexTemplate accepted the mapping');
  };

  test('an OpenSearch mapping of exactly the total-fields limit is built; one field more is refused naming the count', () => {
    const atLimit = base();
    withSearchFields(atLimit, 487, 0);
    expect(openSearchMappingSize(describeSchema('iot', atLimit)).fields).toBe(1000);
    expect(() => openSearchIndexTemplate(describeSchema('iot', atLimit))).not.toThrow();
    const error = searchFailure((s) => withSearchFields(s, 487, 1));
    expect(error).toBeInstanceOf(SchemaDerivationError);
    expect(error.message).toMatch(/^schemas\/iot\.schema\.json at \/: the OpenSearch mapping would have 1001 fields, over the search index's limit of 1000 \(index\.mapping\.total_fields\.limit;/);
  });

  test('objects count as OpenSearch fields too', () => {
    const schema = base();
    withNesting(schema, 3);
    expect(openSearchMappingSize(describeSchema('iot', schema))).toEqual({ fields: 26 + 3 + 1, depth: 4, deepestAt: '/properties/nested/properties/n/properties/n/properties/leaf' });
  });

  test('an OpenSearch mapping deeper than the depth limit is refused naming the deepest field', () => {
    const atLimit = base();
    withNesting(atLimit, 19);
    expect(openSearchMappingSize(describeSchema('iot', atLimit)).depth).toBe(20);
    expect(() => openSearchIndexTemplate(describeSchema('iot', atLimit))).not.toThrow();
    const error = searchFailure((s) => withNesting(s, 20));
    expect(error).toBeInstanceOf(SchemaDerivationError);
    expect(error.message).toMatch(/^schemas\/iot\.schema\.json at \/properties\/nested(\/properties\/n){19}\/properties\/leaf: this field is 21 levels deep in the OpenSearch mapping, past OpenSearch's index\.mapping\.depth\.limit of 20;/);
  });

  test.each(cases)('%s', (_name, mutate, message) => {
    const schema = base();
    mutate(schema);
    let error: unknown;
    try {
      describeSchema('iot', schema);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SchemaDerivationError);
    expect((error as Error).message).toMatch(/^schemas\/iot\.schema\.json at /);
    expect((error as Error).message).toMatch(message);
  });
});
