import { readFileSync } from 'node:fs';

/**
 * The fields of `/proc/<pid>/stat` (Linux) after the parenthesised command name, which may hold
 * spaces: index 0 is the state (field 3 of proc(5)), so field N of proc(5) is index N - 3.
 * Null where there is no such file (the process is gone, or not Linux).
 */
export function procStatFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}
