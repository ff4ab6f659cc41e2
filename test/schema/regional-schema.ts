import { readSchema } from '../../lib/schema';

/**
 * app-events with a free-form `region` partition field (no enum) before event_type's: Athena projects it as
 * `injected`, so a query on the table must name its values.
 */
export function regionalSchema(): object {
  const schema = readSchema('app-events') as { 'x-sluice': object; required: string[]; properties: object };
  return {
    ...schema,
    'x-sluice': { ...schema['x-sluice'], partitionFields: ['region', 'event_type'] },
    required: [...schema.required, 'region'],
    properties: { ...schema.properties, region: { type: 'string', minLength: 1, maxLength: 32 } },
  };
}
