import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { errors, type AdapterPayload } from 'oidc-provider';
import type { KeyService } from '../../src/domain/keys/keys.ts';
import { createLogger } from '../../src/infra/logger.ts';
import { createSweeper } from '../../src/oidc/sweeper.ts';
import { vacuumWhereDue } from '../../src/infra/pglite-maintenance.ts';
import { runInRequestScope } from '../../src/infra/request-scope.ts';
import { DIGESTED_MODELS } from '../../src/oidc/adapter.ts';
import { allRowsAsText, createTestDb, type TestDb } from '../helpers/db.ts';
import { onPostgres } from '../helpers/server.ts';

const id = () => randomUUID();
const nowSeconds = () => Math.floor(Date.now() / 1000);

function isInvalidGrant(err: unknown): boolean {
  assert.ok(err instanceof errors.InvalidGrant, `expected InvalidGrant, got ${String(err)}`);
  assert.equal(err.error, 'invalid_grant');
  return true;
}

describe(`oidc-provider adapter contract (${onPostgres ? 'PostgreSQL' : 'PGlite'})`, () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb();
  });
  after(() => t?.destroy());

  /** Rows as stored, bypassing find's expiry filter. */
  async function rows(where: Record<string, string>) {
    return t.db('oidc_payloads').select('model', 'id', 'grant_id', 'expires_at', 'consumed_at').where(where);
  }
  async function count(where: Record<string, string>) {
    return (await rows(where)).length;
  }
  /** Bulk insert straight into the table (upserting thousands of rows one by one is slow on PGlite). */
  async function bulkInsert(model: string, grantId: string, n: number, expiresAt: Date | null = null) {
    const all = Array.from({ length: n }, () => {
      const jti = id();
      return { model, id: jti, payload: JSON.stringify({ jti, kind: model, grantId }), grant_id: grantId, expires_at: expiresAt };
    });
    for (let i = 0; i < all.length; i += 500) await t.db('oidc_payloads').insert(all.slice(i, i + 500));
  }
  /** A grant with a Grant row, an access token and a refresh token, as the provider stores them. */
  async function seedGrant() {
    const grantId = id();
    const rt = id();
    const at = id();
    // The provider's Grant payload carries no grantId: its own id is the grant id.
    await t.adapterFor('Grant').upsert(grantId, { jti: grantId, kind: 'Grant', accountId: 'acc-1', clientId: 'c1' }, 3600);
    await t.adapterFor('RefreshToken').upsert(rt, { jti: rt, kind: 'RefreshToken', grantId, accountId: 'acc-1' }, 3600);
    await t.adapterFor('AccessToken').upsert(at, { jti: at, kind: 'AccessToken', grantId, accountId: 'acc-1' }, 3600);
    return { grantId, rt, at };
  }

  describe('find batching', () => {
    it('answers many concurrent finds across models, each with its own row', async () => {
      const models = ['AccessToken', 'ClientCredentials', 'RefreshToken'] as const;
      const stored = new Map<string, string>();
      for (let i = 0; i < 30; i++) {
        const model = models[i % 3]!;
        const jti = id();
        await t.adapterFor(model).upsert(jti, { jti, kind: model, n: i }, 3600);
        stored.set(jti, model);
      }
      // Every stored id is looked up under every model at once, as introspection does.
      const lookups = [...stored.keys()].flatMap((jti) => models.map((model) => ({ jti, model })));
      const results = await Promise.all(lookups.map(({ jti, model }) => t.adapterFor(model).find(jti)));
      lookups.forEach(({ jti, model }, i) => {
        const found = results[i] as AdapterPayload | undefined;
        if (stored.get(jti) === model) assert.equal(found?.jti, jti, `${model} ${jti} found`);
        else assert.equal(found, undefined, `${jti} is not a ${model}`);
      });
    });
  });

  describe('write batching', () => {
    /** Statements sent to the database while `work` runs (knex emits every one, prepared or built). */
    async function statementsDuring(work: () => Promise<unknown>) {
      let n = 0;
      const onQuery = () => n++;
      t.db.on('query', onQuery);
      try {
        await work();
      } finally {
        t.db.off('query', onQuery);
      }
      return n;
    }

    it('concurrent upserts share one statement, and each is stored when its promise resolves', async () => {
      const jtis = Array.from({ length: 20 }, () => id());
      const statements = await statementsDuring(() =>
        Promise.all(
          jtis.map(async (jti, n) => {
            await t.adapterFor('AccessToken').upsert(jti, { jti, kind: 'AccessToken', n }, 3600);
            // Resolved: the row is committed, visible to any other connection.
            assert.equal(await count({ model: 'AccessToken', id: t.storedId('AccessToken', jti) }), 1);
          }),
        ),
      );
      assert.ok(statements <= 1 + jtis.length, `one upsert statement, then the ${jtis.length} checks (${statements} sent)`);
      for (const [n, jti] of jtis.entries()) assert.equal((await t.adapterFor('AccessToken').find(jti))?.n, n);
    });

    it('concurrent consumes and upserts share one statement; each consume learns whether it won', async () => {
      const fresh = Array.from({ length: 8 }, () => id());
      const used = id();
      const adapter = t.adapterFor('RefreshToken');
      for (const jti of [...fresh, used]) await adapter.upsert(jti, { jti, kind: 'RefreshToken' }, 3600);
      await adapter.consume(used);
      const newcomers = Array.from({ length: 8 }, () => id());
      let outcomes: PromiseSettledResult<unknown>[] = [];
      const statements = await statementsDuring(async () => {
        outcomes = await Promise.allSettled([
          ...fresh.map((jti) => t.payloads.consume('RefreshToken', t.storedId('RefreshToken', jti))),
          t.payloads.consume('RefreshToken', t.storedId('RefreshToken', used)),
          ...newcomers.map((jti) => adapter.upsert(jti, { jti, kind: 'RefreshToken' }, 3600)),
        ]);
      });
      assert.equal(statements, 1, 'one statement for 9 consumes and 8 upserts');
      assert.deepEqual(
        outcomes.slice(0, 9).map((o) => (o as PromiseFulfilledResult<boolean>).value),
        [...fresh.map(() => true), false],
        'each fresh token is consumed by its call; the used one is not consumed again',
      );
      for (const jti of fresh) assert.equal(typeof (await adapter.find(jti))?.consumed, 'number');
      for (const jti of newcomers) assert.equal((await adapter.find(jti))?.consumed, undefined);
    });

    it('two concurrent upserts of one id both resolve, and the one issued last wins', async () => {
      const jti = id();
      const adapter = t.adapterFor('Session');
      await Promise.all([
        adapter.upsert(jti, { jti, kind: 'Session', version: 1 }, 3600),
        adapter.upsert(jti, { jti, kind: 'Session', version: 2 }, 3600),
        adapter.upsert(jti, { jti, kind: 'Session', version: 3 }, 3600),
      ]);
      assert.equal((await adapter.find(jti))?.version, 3);
      assert.equal(await count({ model: 'Session', id: jti }), 1);
    });

    it('a NUL payload among concurrent upserts fails alone; the others are stored', async () => {
      const good = [id(), id()];
      const bad = id();
      const adapter = t.adapterFor('RefreshToken');
      const outcomes = await Promise.allSettled([
        adapter.upsert(good[0]!, { jti: good[0], kind: 'RefreshToken' }, 3600),
        adapter.upsert(bad, { jti: bad, kind: 'RefreshToken', nonce: 'x\u0000' }, 3600),
        adapter.upsert(good[1]!, { jti: good[1], kind: 'RefreshToken' }, 3600),
      ]);
      assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.ok(await adapter.find(good[0]!));
      assert.ok(await adapter.find(good[1]!));
      assert.equal(await adapter.find(bad), undefined);
    });
  });

  describe('grant read with its token', () => {
    it('a request finding a refresh token gets its grant without another statement, once; the next read goes to the database', async () => {
      const { grantId, rt } = await seedGrant();
      await runInRequestScope({}, async () => {
        assert.ok(await t.adapterFor('RefreshToken').find(rt));
        // Revoked meanwhile (another instance): the read taken with the token is the one handed out ...
        await t.db('oidc_payloads').where({ model: 'Grant', id: grantId }).delete();
        let n = 0;
        const onQuery = () => n++;
        t.db.on('query', onQuery);
        const grant = await t.adapterFor('Grant').find(grantId);
        t.db.off('query', onQuery);
        assert.equal(grant?.jti, grantId);
        assert.equal(n, 0, 'no statement for the grant read with the token');
        // ... and only once: the request's next read sees the revocation.
        assert.equal(await t.adapterFor('Grant').find(grantId), undefined);
      });
      // Another request never sees this request's reads.
      const other = await seedGrant();
      await runInRequestScope({}, async () => {
        assert.ok(await t.adapterFor('RefreshToken').find(other.rt));
      });
      await t.db('oidc_payloads').where({ model: 'Grant', id: other.grantId }).delete();
      await runInRequestScope({}, async () => {
        assert.equal(await t.adapterFor('Grant').find(other.grantId), undefined);
      });
    });
  });

  describe('upsert and find', () => {
    it('round-trips the payload with its JSON types', async () => {
      const adapter = t.adapterFor('AccessToken');
      const jti = id();
      const payload = {
        jti,
        kind: 'AccessToken',
        accountId: 'acc-1',
        iat: 1_700_000_000,
        exp: 1_700_003_600,
        ratio: 0.5,
        negative: -3,
        isOpenId: true,
        disabled: false,
        nothing: null,
        scope: 'openid profile',
        empty: '',
        unicode: 'Tiếng Việt ✓ 🚀',
        claims: { id_token: { email: { essential: true } }, userinfo: { name: null } },
        resources: ['https://api.example.com', 'urn:x'],
        nested: [{ a: 1 }, [2, '3'], [], {}],
      };
      await adapter.upsert(jti, payload as unknown as AdapterPayload, 3600);
      const found = await adapter.find(jti);
      assert.deepEqual(found, payload);
      assert.equal(typeof found?.iat, 'number');
      assert.equal(found?.isOpenId, true);
      assert.equal('consumed' in (found ?? {}), false, 'an unconsumed payload has no consumed field');
    });

    it('keeps models apart: the same id under another model is another row', async () => {
      const jti = id();
      await t.adapterFor('AccessToken').upsert(jti, { jti, kind: 'AccessToken' }, 3600);
      assert.equal(await t.adapterFor('RefreshToken').find(jti), undefined);
      assert.equal(await t.adapterFor('AuthorizationCode').find(jti), undefined);
    });

    it('a second upsert replaces the payload and keeps the consumed state', async () => {
      const adapter = t.adapterFor('RefreshToken');
      const jti = id();
      await adapter.upsert(jti, { jti, kind: 'RefreshToken', scope: 'openid', old: true }, 3600);
      await adapter.consume(jti);
      const consumed = (await adapter.find(jti))?.consumed;
      assert.equal(typeof consumed, 'number');

      await adapter.upsert(jti, { jti, kind: 'RefreshToken', scope: 'openid offline_access' }, 7200);
      const found = await adapter.find(jti);
      assert.equal(found?.scope, 'openid offline_access');
      assert.equal(found?.old, undefined, 'the second payload replaces the first, not merged key by key');
      assert.equal(found?.consumed, consumed, 'upsert must never clear consumed');
      assert.equal(await count({ model: 'RefreshToken', id: t.storedId('RefreshToken', jti) }), 1);
      const [row] = await rows({ model: 'RefreshToken', id: t.storedId('RefreshToken', jti) });
      const ttl = (new Date(row.expires_at).getTime() - Date.now()) / 1000;
      assert.ok(ttl > 7000 && ttl <= 7200, `the second upsert's expiry wins (ttl ${ttl})`);
    });

    it('stores no expiry when expiresIn is not given', async () => {
      const jti = id();
      await t.adapterFor('Session').upsert(jti, { jti, kind: 'Session', uid: id() });
      const [row] = await rows({ model: 'Session', id: jti });
      assert.equal(row.expires_at, null);
      assert.ok(await t.adapterFor('Session').find(jti));
    });

    it('find returns undefined for an unknown id', async () => {
      assert.equal(await t.adapterFor('AccessToken').find(id()), undefined);
      assert.equal(await t.adapterFor('Session').findByUid(id()), undefined);
      assert.equal(await t.adapterFor('DeviceCode').findByUserCode('NOPE-NOPE'), undefined);
    });

    it('find returns undefined once the row has expired', async () => {
      const adapter = t.adapterFor('AuthorizationCode');
      const jti = id();
      await adapter.upsert(jti, { jti, kind: 'AuthorizationCode' }, 1);
      assert.ok(await adapter.find(jti), 'found before expiry');

      // Inserted already expired through the repo.
      const past = id();
      const pastId = t.storedId('AuthorizationCode', past);
      await t.payloads.upsert('AuthorizationCode', pastId, {}, new Date(Date.now() - 5_000), {});
      assert.equal(await adapter.find(past), undefined);
      assert.equal(await count({ model: 'AuthorizationCode', id: pastId }), 1, 'hidden, not deleted');

      await sleep(1_200);
      assert.equal(await adapter.find(jti), undefined, 'expiresIn is in seconds');
    });

    it('findByUid finds a Session by uid and hides it once expired', async () => {
      const adapter = t.adapterFor('Session');
      const jti = id();
      const uid = id();
      await adapter.upsert(jti, { jti, uid, kind: 'Session', accountId: 'acc-1', loginTs: 1_700_000_000 }, 3600);
      const found = await adapter.findByUid(uid);
      assert.equal(found?.jti, jti);
      assert.equal(found?.accountId, 'acc-1');

      const oldJti = id();
      const oldUid = id();
      await t.payloads.upsert('Session', oldJti, { jti: oldJti, uid: oldUid }, new Date(Date.now() - 1_000), { uid: oldUid });
      assert.equal(await adapter.findByUid(oldUid), undefined);
    });

    it('findByUserCode finds a device code by its user code', async () => {
      const adapter = t.adapterFor('DeviceCode');
      const jti = id();
      await adapter.upsert(jti, { jti, kind: 'DeviceCode', userCode: 'ABCD-EFGH', clientId: 'c1' }, 600);
      const found = await adapter.findByUserCode('ABCD-EFGH');
      assert.equal(found?.jti, jti);
      assert.equal(found?.clientId, 'c1');
      assert.equal(await t.adapterFor('AccessToken').findByUserCode('ABCD-EFGH'), undefined, 'per model');
    });

    it('rejects a payload containing a NUL character and stores nothing', async () => {
      const adapter = t.adapterFor('AuthorizationCode');
      const jti = id();
      const nul = { name: 'RangeError', message: 'payload contains a NUL character' };
      await assert.rejects(adapter.upsert(jti, { jti, kind: 'AuthorizationCode', nonce: 'a\u0000b' }, 600), nul);
      await assert.rejects(adapter.upsert(jti, { jti, extra: { ['k\u0000']: 1 } }, 600), nul, 'in a key as well');
      assert.equal(await adapter.find(jti), undefined);
      assert.equal(await count({ model: 'AuthorizationCode', id: t.storedId('AuthorizationCode', jti) }), 0);
    });

    it('accepts the six characters \\u0000 as text (only a real NUL is refused)', async () => {
      const adapter = t.adapterFor('AuthorizationCode');
      const jti = id();
      const payload = { jti, nonce: '\\u0000', redirectUri: 'x\\\\u0000y' };
      await adapter.upsert(jti, payload, 600);
      assert.deepEqual(await adapter.find(jti), payload);
    });
  });

  describe('bearer values at rest', () => {
    for (const model of DIGESTED_MODELS) {
      it(`a ${model} is stored under a keyed digest, with no jti in its payload, and works by its value`, async () => {
        const adapter = t.adapterFor(model);
        const grantId = id();
        const value = id();
        await adapter.upsert(value, { jti: value, kind: model, grantId, accountId: 'acc-1', scope: 'openid' }, 600);

        const dump = await allRowsAsText(t.db);
        assert.equal(dump.includes(value), false, 'no table holds the value');
        const [row] = await rows({ model, grant_id: grantId });
        assert.ok(row, 'the row is there, keyed by grant as before');
        assert.equal(row.id, t.storedId(model, value));

        assert.deepEqual(await adapter.find(value), { jti: value, kind: model, grantId, accountId: 'acc-1', scope: 'openid' });
        assert.equal(await adapter.find(row.id), undefined, 'the stored id itself is not a working token');
        await adapter.consume(value);
        assert.equal(typeof (await adapter.find(value))?.consumed, 'number');
        await adapter.destroy(value);
        assert.equal(await adapter.find(value), undefined);
      });
    }

    it('Session, Interaction and Grant keep their ids (cookies signed with sealed keys; a grant id is no credential)', async () => {
      for (const model of ['Session', 'Interaction', 'Grant']) {
        const value = id();
        await t.adapterFor(model).upsert(value, { jti: value, kind: model, uid: id() }, 600);
        assert.equal(await count({ model, id: value }), 1, model);
        assert.equal((await t.adapterFor(model).find(value))?.jti, value);
      }
    });
  });

  describe('consume', () => {
    it('marks the payload consumed with epoch seconds, seen by the next find', async () => {
      const adapter = t.adapterFor('AuthorizationCode');
      const jti = id();
      await adapter.upsert(jti, { jti, kind: 'AuthorizationCode' }, 600);
      const before = nowSeconds();
      await adapter.consume(jti);
      const found = await adapter.find(jti);
      assert.ok(Number.isInteger(found?.consumed), `consumed is an integer, got ${String(found?.consumed)}`);
      // The database clock sets it; allow a little skew.
      assert.ok(Math.abs((found!.consumed as number) - before) <= 5, `consumed ${found?.consumed} near ${before}`);
      assert.equal(found?.jti, jti);
    });

    it('a second consume throws InvalidGrant', async () => {
      for (const model of ['AuthorizationCode', 'RefreshToken', 'AccessToken']) {
        const adapter = t.adapterFor(model);
        const jti = id();
        await adapter.upsert(jti, { jti, kind: model }, 600);
        await adapter.consume(jti);
        await assert.rejects(adapter.consume(jti), isInvalidGrant);
      }
    });

    for (const model of ['AuthorizationCode', 'RefreshToken']) {
      it(`of two concurrent consumes of one ${model} exactly one wins, and reuse revokes the grant`, async () => {
        // Several rounds: on PostgreSQL the two run on separate connections.
        for (let round = 0; round < 5; round++) {
          const { grantId, rt, at } = await seedGrant();
          const other = await seedGrant();
          const jti = id();
          await t.adapterFor(model).upsert(jti, { jti, kind: model, grantId, accountId: 'acc-1' }, 600);

          const adapter = t.adapterFor(model);
          const results = await Promise.allSettled([adapter.consume(jti), adapter.consume(jti)]);
          assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one consume wins');
          const lost = results.filter((r) => r.status === 'rejected');
          assert.equal(lost.length, 1, 'exactly one consume loses');
          isInvalidGrant(lost[0]?.reason);

          assert.equal(await count({ grant_id: grantId }), 0, 'every row of the grant is gone');
          assert.equal(await t.adapterFor('Grant').find(grantId), undefined, 'the Grant itself is gone');
          assert.equal(await t.adapterFor('AccessToken').find(at), undefined);
          assert.equal(await t.adapterFor('RefreshToken').find(rt), undefined);
          assert.equal(await t.adapterFor(model).find(jti), undefined);

          assert.ok(await t.adapterFor('Grant').find(other.grantId), 'another grant is untouched');
          assert.ok(await t.adapterFor('AccessToken').find(other.at));
          assert.ok(await t.adapterFor('RefreshToken').find(other.rt));
        }
      });
    }

    it('a reused RefreshToken (sequential) revokes its grant too', async () => {
      const { grantId, rt, at } = await seedGrant();
      const adapter = t.adapterFor('RefreshToken');
      await adapter.consume(rt);
      assert.ok(await t.adapterFor('AccessToken').find(at), 'the first use revokes nothing');
      await assert.rejects(adapter.consume(rt), isInvalidGrant);
      assert.equal(await count({ grant_id: grantId }), 0);
      assert.equal(await t.adapterFor('Grant').find(grantId), undefined);
    });
  });

  describe('destroy and revokeByGrantId', () => {
    it('destroy removes one row only', async () => {
      const adapter = t.adapterFor('AccessToken');
      const a = id();
      const b = id();
      await adapter.upsert(a, { jti: a }, 600);
      await adapter.upsert(b, { jti: b }, 600);
      await t.adapterFor('RefreshToken').upsert(a, { jti: a }, 600);
      await adapter.destroy(a);
      assert.equal(await adapter.find(a), undefined);
      assert.ok(await adapter.find(b));
      assert.ok(await t.adapterFor('RefreshToken').find(a), 'same id under another model stays');
      await adapter.destroy(id()); // unknown id: no error
    });

    it("revokeByGrantId removes only that model's rows of that grant", async () => {
      const g1 = await seedGrant();
      const g2 = await seedGrant();
      const at2 = id();
      await t.adapterFor('AccessToken').upsert(at2, { jti: at2, grantId: g1.grantId }, 600);

      await t.adapterFor('AccessToken').revokeByGrantId(g1.grantId);
      assert.equal(await t.adapterFor('AccessToken').find(g1.at), undefined);
      assert.equal(await t.adapterFor('AccessToken').find(at2), undefined);
      assert.ok(await t.adapterFor('RefreshToken').find(g1.rt), 'other models of the grant remain');
      assert.ok(await t.adapterFor('Grant').find(g1.grantId), 'the Grant remains');
      assert.ok(await t.adapterFor('AccessToken').find(g2.at), 'other grants remain');
      assert.ok(await t.adapterFor('RefreshToken').find(g2.rt));
    });

    it('revokes more than one batch (1200 rows of one grant)', async () => {
      const grantId = id();
      const otherGrant = id();
      await bulkInsert('AccessToken', grantId, 1200);
      await bulkInsert('RefreshToken', grantId, 3);
      await bulkInsert('AccessToken', otherGrant, 3);
      assert.equal(await count({ model: 'AccessToken', grant_id: grantId }), 1200);

      await t.adapterFor('AccessToken').revokeByGrantId(grantId);
      assert.equal(await count({ model: 'AccessToken', grant_id: grantId }), 0);
      assert.equal(await count({ model: 'RefreshToken', grant_id: grantId }), 3);
      assert.equal(await count({ grant_id: otherGrant }), 3);

      // Without a model (the reuse path) every model's rows go, again across batches.
      await bulkInsert('AccessToken', grantId, 700);
      await bulkInsert('AuthorizationCode', grantId, 600);
      await t.payloads.revokeByGrantId(grantId);
      assert.equal(await count({ grant_id: grantId }), 0);
      assert.equal(await count({ grant_id: otherGrant }), 3);
    });
  });

  describe('Client model', () => {
    it('reads the clients table, with the secret digest as client_secret', async () => {
      const clientId = `client-${id()}`;
      const metadata = {
        client_name: 'Example',
        redirect_uris: ['https://rp.example.com/cb'],
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'client_secret_basic',
      };
      await t.clients.insert({ client_id: clientId, metadata, first_party: true, secret_digest: 'digest-abc' });
      const found = await t.adapterFor('Client').find(clientId);
      assert.equal(found?.client_id, clientId);
      assert.equal(found?.first_party, true);
      assert.equal(found?.client_secret, 'digest-abc');
      assert.deepEqual(found?.redirect_uris, metadata.redirect_uris);
      assert.deepEqual(found?.grant_types, metadata.grant_types);
      assert.equal(found?.client_name, 'Example');

      const publicId = `public-${id()}`;
      await t.clients.insert({
        client_id: publicId,
        metadata: { redirect_uris: ['https://spa.example.com/cb'], token_endpoint_auth_method: 'none' },
        first_party: false,
      });
      const pub = await t.adapterFor('Client').find(publicId);
      assert.equal(pub?.first_party, false);
      assert.equal('client_secret' in (pub ?? {}), false, 'no secret for a public client');

      assert.equal(await t.adapterFor('Client').find(`unknown-${id()}`), undefined);
    });

    it('refuses writes from the provider', async () => {
      const adapter = t.adapterFor('Client');
      const clientId = `client-${id()}`;
      const managed = { name: 'Error', message: 'clients are managed through the admin API' };
      await assert.rejects(adapter.upsert(clientId, { client_id: clientId }, 0), managed);
      await t.clients.insert({ client_id: clientId, metadata: {}, first_party: false });
      await assert.rejects(adapter.destroy(clientId), managed);
      await assert.rejects(adapter.consume(clientId), { name: 'Error', message: 'clients cannot be consumed' });
      assert.ok(await adapter.find(clientId), 'still there');
    });
  });

  describe('sweeper', () => {
    it('deletes rows expired more than 60 s ago and keeps the rest', async () => {
      const sweeper = createSweeper({
        db: t.db,
        payloads: t.payloads,
        keys: { purgeRetired: async () => 0 } as unknown as KeyService,
        logger: createLogger('silent'),
      });
      const old = id();
      const recent = id();
      const live = id();
      const forever = id();
      const consumedOld = id();
      await t.payloads.upsert('AccessToken', old, { jti: old }, new Date(Date.now() - 10 * 60_000), {});
      await t.payloads.upsert('AccessToken', recent, { jti: recent }, new Date(Date.now() - 10_000), {});
      await t.payloads.upsert('AccessToken', live, { jti: live }, new Date(Date.now() + 3_600_000), {});
      await t.payloads.upsert('Session', forever, { jti: forever }, null, {});
      await t.payloads.upsert('RefreshToken', consumedOld, { jti: consumedOld }, new Date(Date.now() - 10 * 60_000), {});
      await t.payloads.consume('RefreshToken', consumedOld);
      // More than one sweep batch (1000).
      const bulkGrant = id();
      await bulkInsert('AuthorizationCode', bulkGrant, 1500, new Date(Date.now() - 3_600_000));

      const swept = await sweeper.sweepOnce();
      assert.ok(swept >= 1502, `swept ${swept}`);
      assert.equal(await count({ model: 'AccessToken', id: old }), 0, 'expired 10 minutes ago: deleted');
      assert.equal(await count({ model: 'RefreshToken', id: consumedOld }), 0, 'expired, even if consumed');
      assert.equal(await count({ grant_id: bulkGrant }), 0);
      assert.equal(await count({ model: 'AccessToken', id: recent }), 1, 'within the 60 s grace: kept');
      assert.equal(await count({ model: 'AccessToken', id: live }), 1, 'unexpired: kept');
      assert.equal(await count({ model: 'Session', id: forever }), 1, 'no expiry: kept');

      assert.equal(await sweeper.sweepOnce(), 0, 'nothing left to sweep');
      await sweeper.stop();
    });

    it('sweeps a backlog larger than one batch in batches, and a stopped sweeper leaves it alone', async () => {
      const make = (batchSize: number) =>
        createSweeper({
          db: t.db,
          payloads: t.payloads,
          keys: { purgeRetired: async () => 0 } as unknown as KeyService,
          logger: createLogger('silent'),
          batchSize,
        });
      const grant = id();
      await bulkInsert('AccessToken', grant, 250, new Date(Date.now() - 3_600_000));
      const stopped = make(100);
      await stopped.stop();
      assert.equal(await stopped.sweepOnce(), 0, 'a stopping instance starts no batch');
      assert.equal(await count({ grant_id: grant }), 250);

      const sweeper = make(100);
      assert.equal(await sweeper.sweepOnce(), 250, 'three batches: 100, 100, 50');
      assert.equal(await count({ grant_id: grant }), 0);
      await sweeper.stop();
    });

    it('on PGlite, which has no autovacuum, a pass vacuums the tables autovacuum would and only those', { skip: onPostgres && 'PostgreSQL vacuums on its own' }, async () => {
      const sweeper = createSweeper({
        db: t.db,
        payloads: t.payloads,
        keys: { purgeRetired: async () => 0 } as unknown as KeyService,
        logger: createLogger('silent'),
        afterSweep: () => vacuumWhereDue(t.db),
      });
      const stats = async () => {
        await t.db.raw('select pg_stat_force_next_flush()');
        const { rows } = await t.db.raw(`select n_dead_tup, vacuum_count from pg_stat_user_tables where relname = 'oidc_payloads'`);
        return rows[0] as { n_dead_tup: number; vacuum_count: number };
      };
      await bulkInsert('AccessToken', id(), 600, new Date(Date.now() - 3_600_000));
      const before = await stats();
      await sweeper.runPass();
      const after = await stats();
      assert.equal(Number(after.vacuum_count), Number(before.vacuum_count) + 1, 'the 600 deleted rows made it due');
      assert.ok(Number(after.n_dead_tup) < 50, `dead rows left: ${after.n_dead_tup}`);
      await sweeper.runPass();
      assert.equal(Number((await stats()).vacuum_count), Number(after.vacuum_count), 'nothing changed since: not vacuumed again');
      await sweeper.stop();
    });
  });
});
