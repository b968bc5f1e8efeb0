/**
 * Whether the module at `url` is the script node was started with. Compared by real path:
 * `dist` is a link to the current build (scripts/build.mjs), so `node dist/x.js` runs a module
 * whose import.meta.url names dist.<build>/x.js.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function isMain(url: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(url));
  } catch {
    return false;
  }
}
