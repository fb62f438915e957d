/**
 * The program version, recorded in every snapshot. Keep in step with package.json.
 * @example
 * ```ts
 * console.log(`coffer ${VERSION}`);
 * ```
 */
export const VERSION = '0.1.0';
