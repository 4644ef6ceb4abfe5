/**
 * Optional libraries (jose, the Vault client, the AWS SDK, ioredis) are loaded on first use, once
 * per process: a feature that is not configured costs neither start-up time nor resident memory.
 * Each caller keeps its own `import()` (so the module's type comes along) and wraps it here.
 */

/**
 * `load()` called at most once at a time and its module kept; a failed import is retried on the
 * next call. The error names the library only (an import error quotes file paths).
 */
export function lazyImport<T>(library: string, load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () => {
    loading ??= load().catch((err: unknown) => {
      loading = undefined;
      throw new Error(`${library} could not be loaded (${err instanceof Error ? err.name : "unknown error"})`, { cause: err });
    });
    return loading;
  };
}
