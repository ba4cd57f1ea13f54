import type { SsoConfigService } from '@warden/vault';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { adminActor, adminAuth } from '../http/auth.ts';
import { errorResponses } from '../http/schemas.ts';

/** The operator's side of SSO: settling who holds an email domain. */
export async function ssoAdminRoutes(
  app: FastifyInstance,
  deps: { ssoConfigs: Pick<SsoConfigService, 'releaseDomain'>; adminToken: string | null },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', adminAuth(deps.adminToken));

  r.delete('/admin/v1/sso/domains/:domain', {
    schema: {
      tags: ['admin'],
      summary:
        'Release an SSO email domain: every organization’s claim of it goes (each gets an sso.domain_released record), so it routes nobody until an organization proves it again',
      security: [{ adminToken: [] }],
      params: z.object({ domain: z.string().max(253) }),
      response: {
        200: z.object({
          domain: z.string(),
          released_from: z.array(z.string()).describe('Tenants whose claim of the domain went.'),
        }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const released = await deps.ssoConfigs.releaseDomain(adminActor(request), request.params.domain);
      return { domain: released.domain, released_from: released.releasedFrom };
    },
  });
}
