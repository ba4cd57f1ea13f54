import dns2 from 'dns2';

const { Packet } = dns2;

/**
 * A real DNS server on loopback (UDP, dns2) answering TXT questions from a table the test
 * edits, so the SSO domain proof asks DNS exactly as it would in production.
 */
export interface TestDns {
  /** `host:port`, for `SSO_DNS_SERVERS`. */
  readonly server: string;
  /** Publishes these TXT records at `name` (null removes them: the name answers NXDOMAIN). */
  setTxt(name: string, values: readonly string[] | null): void;
  /** Answers every question SERVFAIL (a resolver in trouble) until called with false. */
  fail(failing: boolean): void;
  /** Questions asked so far, as `name TYPE`. */
  readonly questions: readonly string[];
  close(): Promise<void>;
}

export async function startTestDns(): Promise<TestDns> {
  const records = new Map<string, readonly string[]>();
  const questions: string[] = [];
  let failing = false;
  const server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request);
      const [question] = request.questions;
      if (!question) return void send(response);
      const name = question.name.toLowerCase();
      questions.push(`${name} ${question.type === Packet.TYPE.TXT ? 'TXT' : String(question.type)}`);
      if (failing) {
        response.header.rcode = Packet.RCODE.SERVFAIL;
        return void send(response);
      }
      const values = records.get(name);
      if (!values) {
        response.header.rcode = Packet.RCODE.NXDOMAIN;
        return void send(response);
      }
      if (question.type === Packet.TYPE.TXT) {
        for (const data of values) {
          // dns2 encodes a plain record; its type declarations also ask for a `toBuffer` it does not use.
          response.answers.push({
            name: question.name,
            type: Packet.TYPE.TXT,
            class: Packet.CLASS.IN,
            ttl: 60,
            data,
          } as (typeof response.answers)[number]);
        }
      }
      void send(response);
    },
  });
  const addresses = await server.listen({ udp: { port: 0, address: '127.0.0.1' } });
  const port = addresses.udp?.port;
  if (!port) throw new Error('the test DNS server did not start');
  return {
    server: `127.0.0.1:${port}`,
    setTxt(name, values) {
      if (values) records.set(name.toLowerCase(), values);
      else records.delete(name.toLowerCase());
    },
    fail(value) {
      failing = value;
    },
    questions,
    close: () => server.close(),
  };
}
