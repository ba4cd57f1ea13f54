import type { KyselyPlugin } from 'kysely';

/**
 * A Kysely plugin that records the kind of every query it sees (and the text of raw `sql`
 * ones), so a test can count the round trips a code path makes.
 */
export function recordQueries(): { plugin: KyselyPlugin; queries: Array<{ kind: string; text: string }> } {
  const queries: Array<{ kind: string; text: string }> = [];
  return {
    queries,
    plugin: {
      transformQuery(args) {
        const text = args.node.kind === 'RawNode' ? args.node.sqlFragments.join('?') : '';
        queries.push({ kind: args.node.kind, text });
        return args.node;
      },
      transformResult: async (args) => args.result,
    },
  };
}
