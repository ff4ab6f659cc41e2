/**
 * The PII hash key: plain from the environment (local twin, dev) or a Secrets Manager secret
 * string, fetched once per cold start and cached. A failed fetch is not cached, so the next
 * invocation tries again (Firehose retries the failed invocation; no record is lost).
 */

export type SecretSource = string | (() => Promise<string>);

/** A function that resolves the secret once and then returns the cached value. */
export function cachedSecret(source: SecretSource): () => Promise<string> {
  if (typeof source === 'string') {
    const value = source;
    return () => Promise.resolve(value);
  }
  let pending: Promise<string> | undefined;
  return () => {
    pending ??= source().then(
      (value) => {
        if (value === '') throw new Error('the PII hash key is empty');
        return value;
      },
    ).catch((err: unknown) => {
      pending = undefined;
      throw err;
    });
    return pending;
  };
}

/** Reads a secret string from Secrets Manager (the SDK client is loaded only when a secret is used). */
export async function secretStringFromSecretsManager(secretId: string): Promise<string> {
  const { SecretsManagerClient, GetSecretValueCommand } = await import('@aws-sdk/client-secrets-manager');
  const client = new SecretsManagerClient({});
  const answer = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
  if (typeof answer.SecretString !== 'string' || answer.SecretString === '') {
    throw new Error(`secret ${secretId} has no SecretString; store the PII hash key as a plain secret string`);
  }
  return answer.SecretString;
}

/**
 * The PII hash key named by the environment: SLUICE_PII_HASH_KEY (plain) or
 * SLUICE_PII_HASH_KEY_SECRET_ARN (Secrets Manager). Undefined when neither is set.
 */
export function piiHashKeyFromEnv(env: NodeJS.ProcessEnv): SecretSource | undefined {
  const plain = env.SLUICE_PII_HASH_KEY;
  if (plain !== undefined && plain !== '') return plain;
  const arn = env.SLUICE_PII_HASH_KEY_SECRET_ARN;
  if (arn !== undefined && arn !== '') return () => secretStringFromSecretsManager(arn);
  return undefined;
}
