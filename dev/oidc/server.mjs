#!/usr/bin/env node
// Keycloak stand-in for development and tests.
//
// Keycloak cannot be installed on the development machines, so this script runs
// panva's oidc-provider (OpenID Certified) configured to look like Keycloak from
// the outside: same URL layout, same password grant ("direct access grants"),
// access tokens shaped like Keycloak's. Users, the client and its secret are read
// from the Keycloak realm export in keycloak/, so the two never drift apart.
//
// It also offers the device authorization grant (RFC 8628) and a sign-in page
// for it, for the lanzadera CLI's public client.
//
// Environment (all optional):
//   LZ_OIDC_PORT         listen port (default 8180)
//   LZ_OIDC_HOST         listen address (default 127.0.0.1)
//   LZ_OIDC_BASE_URL     public base URL (default http://<host>:<port>)
//   LZ_OIDC_REALM_FILE   realm export (default: first argument, else keycloak/lanzadera-realm.json)
//   LZ_OIDC_DATA_DIR     where the RSA signing key is kept across restarts (default: a fresh key each start)
//   LZ_OIDC_TOKEN_TTL    access token lifetime in seconds (default: realm accessTokenLifespan, else 300)
//   LANZADERA_CACHE      where dev/install.sh put oidc-provider (default ~/.cache/lanzadera)
//
// Never logs passwords, secrets or tokens.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// The pin lives in dev/versions.env, with the other servers'.
const OIDC_PROVIDER_VERSION = fs
  .readFileSync(path.join(HERE, '..', 'versions.env'), 'utf8')
  .match(/^OIDC_PROVIDER_VERSION=(\S+)$/m)[1];

// ESM ignores NODE_PATH, so resolve the pinned install by absolute path.
const cache = process.env.LANZADERA_CACHE || path.join(os.homedir(), '.cache', 'lanzadera');
const deps = path.join(cache, `oidc-provider-${OIDC_PROVIDER_VERSION}`, 'node_modules');
const requireFromDeps = createRequire(path.join(deps, 'resolve-from-here.js'));
const importDep = async (name) => import(pathToFileURL(requireFromDeps.resolve(name)).href);
const { default: Provider, errors } = await importDep('oidc-provider');
const jose = await importDep('jose');

const log = (msg) => process.stdout.write(`[oidc] ${msg}\n`);

// ---------------------------------------------------------------- realm file

const realmFile = path.resolve(
  process.argv[2] || process.env.LZ_OIDC_REALM_FILE || path.join(HERE, '..', '..', 'keycloak', 'lanzadera-realm.json'),
);
const realm = JSON.parse(fs.readFileSync(realmFile, 'utf8'));
if (!realm.realm) throw new Error(`${realmFile}: no "realm" name`);

const port = Number(process.env.LZ_OIDC_PORT || 8180);
const host = process.env.LZ_OIDC_HOST || '127.0.0.1';
const baseUrl = (process.env.LZ_OIDC_BASE_URL || `http://${host}:${port}`).replace(/\/$/, '');
const realmPath = `/realms/${realm.realm}`;
const issuer = `${baseUrl}${realmPath}`;
const tokenTtl = Number(process.env.LZ_OIDC_TOKEN_TTL || realm.accessTokenLifespan || 300);
// Keycloak's refresh token lives as long as the session may stay idle; each
// refresh renews it.
const refreshTtl = Number(realm.ssoSessionIdleTimeout || 1800);

// Keycloak gives every user the realm's default role, a composite of these.
const defaultRoleName = `default-roles-${realm.realm.toLowerCase()}`;
const defaultRoleRealmRoles = ['offline_access', 'uma_authorization'];
const defaultRoleAccountRoles = ['manage-account', 'manage-account-links', 'view-profile'];
const compositeRealmRoles = new Map(
  (realm.roles?.realm ?? [])
    .filter((r) => r.composite && r.composites?.realm)
    .map((r) => [r.name, r.composites.realm]),
);

function expandRealmRoles(direct) {
  const out = new Set();
  const visit = (name) => {
    if (out.has(name)) return;
    out.add(name);
    if (name === defaultRoleName && !compositeRealmRoles.has(name)) defaultRoleRealmRoles.forEach(visit);
    (compositeRealmRoles.get(name) ?? []).forEach(visit);
  };
  direct.forEach(visit);
  return [...out];
}

const users = new Map(); // lower-case username -> user
for (const u of realm.users ?? []) {
  const cred = (u.credentials ?? []).find((c) => c.type === 'password' && typeof c.value === 'string');
  if (!u.username || !u.id || !cred) continue; // only users we can check a password for
  const directRoles = u.realmRoles ?? [];
  const name = [u.firstName, u.lastName].filter(Boolean).join(' ');
  users.set(u.username.toLowerCase(), {
    id: u.id,
    username: u.username.toLowerCase(),
    enabled: u.enabled !== false,
    passwordDigest: crypto.createHash('sha256').update(cred.value).digest(),
    roles: expandRealmRoles(directRoles),
    accountRoles: directRoles.includes(defaultRoleName) ? defaultRoleAccountRoles : [],
    claims: {
      email: u.email,
      email_verified: u.email ? Boolean(u.emailVerified) : undefined,
      name: name || undefined,
      given_name: u.firstName,
      family_name: u.lastName,
    },
  });
}
const usersById = new Map([...users.values()].map((u) => [u.id, u]));

// Confidential clients sign in with their secret; public clients (a CLI, say)
// with none, as Keycloak's "Client authentication: off".
const realmClients = (realm.clients ?? []).filter(
  (c) => c.clientId && c.enabled !== false && !c.bearerOnly && (c.publicClient || c.secret),
);
if (!realmClients.length) throw new Error(`${realmFile}: no enabled client`);

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

const clients = realmClients.map((c) => {
  const grantTypes = [];
  if (c.directAccessGrantsEnabled) grantTypes.push('password');
  if (c.standardFlowEnabled) grantTypes.push('authorization_code');
  if (c.serviceAccountsEnabled && !c.publicClient) grantTypes.push('client_credentials');
  if (c.attributes?.['oauth2.device.authorization.grant.enabled'] === 'true') grantTypes.push(DEVICE_GRANT);
  // Keycloak hands out a refresh token with every user sign-in.
  if (grantTypes.some((g) => g !== 'client_credentials')) grantTypes.push('refresh_token');
  return {
    client_id: c.clientId,
    client_name: c.name,
    ...(c.publicClient ? {} : { client_secret: c.secret }),
    grant_types: grantTypes,
    response_types: c.standardFlowEnabled ? ['code'] : [],
    redirect_uris: c.standardFlowEnabled ? (c.redirectUris ?? []).filter((u) => !u.includes('*')) : [],
    // Both client_secret_basic and client_secret_post are accepted for
    // client-secret clients (oidc-provider treats them as one family).
    token_endpoint_auth_method: c.publicClient ? 'none' : 'client_secret_basic',
  };
});

// ------------------------------------------------------------- signing key

function loadOrCreateSigningKey() {
  const dir = process.env.LZ_OIDC_DATA_DIR;
  const file = dir ? path.join(dir, 'signing-key.jwk.json') : undefined;
  if (file && fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'));
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  // kid = RFC 7638 thumbprint of the public key, stable for the same key.
  const thumb = crypto.createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
  const key = { ...jwk, kid: thumb, use: 'sig', alg: 'RS256' };
  if (file) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(file, JSON.stringify(key), { mode: 0o600 });
  }
  return key;
}
const signingKey = loadOrCreateSigningKey();
const { d, p, q, dp, dq, qi, ...publicJwk } = signingKey;
const publicKey = await jose.importJWK(publicJwk, 'RS256');

// ------------------------------------------------------------------ errors

// Keycloak answers a wrong username or password with 401, not the 400 of RFC 6749.
class InvalidUserCredentials extends errors.OIDCProviderError {
  constructor() {
    super(401, 'invalid_grant');
    this.error_description = 'Invalid user credentials';
  }
}

// --------------------------------------------------------------- provider

const OIDC_SCOPES = ['openid', 'profile', 'email', 'roles', 'offline_access'];
const DEFAULT_SCOPES = ['email', 'profile']; // what Keycloak grants when no scope is asked for

// Keycloak has no resource indicators; the library needs one to issue JWT access
// tokens from its own grants (device code, refresh), so every token is for this
// one resource, and carries Keycloak's audience.
const API_RESOURCE = 'urn:lanzadera:api';

// Keycloak-shaped access token for a user, built from the library's JWT format.
const accessTokenServer = {
  audience: 'account', // Keycloak's access tokens carry aud "account", not the client id
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
  scope: OIDC_SCOPES.join(' '),
};

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: OIDC_SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'given_name', 'family_name'],
  },
  features: {
    devInteractions: { enabled: false }, // the login page below checks the realm's passwords
    deviceFlow: {
      enabled: true,
      userCodeInputSource: async (ctx, form, out, err) => {
        const msg = err ? 'That code is not valid. Try again.' : 'Enter the code your device shows.';
        ctx.body = page('Sign in a device', `<p>${msg}</p>${form}<button type="submit" form="op.deviceInputForm">Continue</button>`);
      },
      userCodeConfirmSource: async (ctx, form, client, deviceInfo, userCode) => {
        const name = escapeHtml(client.clientName || client.clientId);
        ctx.body = page('Confirm the device', `<p><strong>${name}</strong> asks to sign in. Your device shows <code>${escapeHtml(userCode)}</code>.</p>${form}<button type="submit" form="op.deviceConfirmForm">Continue</button> <button type="submit" form="op.deviceConfirmForm" value="yes" name="abort">Abort</button>`);
      },
      successSource: async (ctx) => {
        ctx.body = page('Signed in', '<p>Your device is signed in. You can close this window.</p>');
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => API_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== API_RESOURCE) throw new errors.InvalidTarget();
        return accessTokenServer;
      },
    },
  },
  // Keycloak's clients here are first-party: a signed-in user is never asked to consent.
  async loadExistingGrant(ctx) {
    const known = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    const existing = known && (await ctx.oidc.provider.Grant.find(known));
    if (existing) return existing;
    const grant = fullGrant(ctx.oidc.session.accountId, ctx.oidc.client.clientId);
    await grant.save();
    return grant;
  },
  interactions: { url: async (ctx, interaction) => `${realmPath}/interaction/${interaction.uid}` },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  ttl: { AccessToken: tokenTtl, RefreshToken: refreshTtl, Grant: refreshTtl * 20, DeviceCode: 600, Interaction: 600, Session: refreshTtl },
  routes: {
    authorization: '/protocol/openid-connect/auth',
    token: '/protocol/openid-connect/token',
    jwks: '/protocol/openid-connect/certs',
    userinfo: '/protocol/openid-connect/userinfo',
    end_session: '/protocol/openid-connect/logout',
    introspection: '/protocol/openid-connect/token/introspect',
    revocation: '/protocol/openid-connect/revoke',
    pushed_authorization_request: '/protocol/openid-connect/ext/par/request',
    code_verification: '/protocol/openid-connect/auth/device',
    device_authorization: '/protocol/openid-connect/auth/device/request',
  },
  async findAccount(ctx, sub) {
    const user = usersById.get(sub);
    if (!user) return undefined;
    return { accountId: sub, claims: async () => userClaims(user) };
  },
  formats: {
    customizers: {
      async jwt(ctx, token, jwt) {
        // The openidconnect crate rejects the library's default "at+jwt"; Keycloak sends "JWT".
        jwt.header = { typ: 'JWT' };
        const user = usersById.get(token.accountId);
        if (!user) return;
        const { client_id: clientId, ...standard } = jwt.payload;
        jwt.payload = {
          ...standard,
          typ: 'Bearer',
          azp: clientId,
          sid: token.sid,
          acr: '1',
          'allowed-origins': [],
          realm_access: { roles: user.roles },
          ...(user.accountRoles.length ? { resource_access: { account: { roles: user.accountRoles } } } : {}),
          ...userClaims(user),
        };
      },
    },
  },
});

function fullGrant(accountId, clientId) {
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope(OIDC_SCOPES.join(' '));
  grant.addResourceScope(API_RESOURCE, accessTokenServer.scope);
  return grant;
}

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// A plain page: nothing loaded from elsewhere (the machines have no internet).
function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem}input,button{font-size:1rem;padding:.4rem;margin:.2rem 0}label{display:block;margin-top:.6rem}</style></head>
<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function userClaims(user) {
  const out = { sub: user.id, preferred_username: user.username };
  for (const [k, v] of Object.entries(user.claims)) if (v !== undefined) out[k] = v;
  return out;
}

// Constant-time password check (compare digests so lengths never leak).
function passwordMatches(user, password) {
  const digest = crypto.createHash('sha256').update(String(password)).digest();
  return crypto.timingSafeEqual(digest, user.passwordDigest);
}

// Keycloak's "direct access grants": runs after oidc-provider has checked the
// client's secret (client_secret_basic or client_secret_post) and that the
// client may use this grant.
provider.registerGrantType('password', async (ctx) => {
  const { client, params } = ctx.oidc;
  if (!params.username) throw new errors.InvalidRequest('Missing parameter: username');

  const user = users.get(String(params.username).toLowerCase());
  const ok = user && user.enabled && passwordMatches(user, params.password ?? '');
  if (!ok) throw new InvalidUserCredentials();

  const requested = params.scope ? params.scope.split(' ').filter(Boolean) : [];
  const unknown = requested.filter((s) => !OIDC_SCOPES.includes(s));
  if (unknown.length) throw new errors.InvalidScope(`Invalid scopes: ${params.scope}`, unknown.join(' '));
  const scope = [...new Set([...requested.filter((s) => s === 'openid'), ...DEFAULT_SCOPES, ...requested])].join(' ');

  const token = new provider.AccessToken({
    accountId: user.id,
    client,
    gty: 'password',
    scope,
    sid: crypto.randomUUID(),
  });
  token.resourceServer = accessTokenServer;
  const value = await token.save();

  let refresh;
  if (client.grantTypeAllowed('refresh_token')) {
    const grant = fullGrant(user.id, client.clientId);
    const grantId = await grant.save();
    token.grantId = grantId;
    refresh = new provider.RefreshToken({
      accountId: user.id, client, gty: 'password', scope, grantId, resource: API_RESOURCE, sid: token.sid,
    });
  }

  ctx.body = {
    access_token: value,
    expires_in: token.expiration,
    ...(refresh ? { refresh_token: await refresh.save(), refresh_expires_in: refresh.expiration } : { refresh_expires_in: 0 }),
    token_type: 'Bearer',
    'not-before-policy': 0,
    session_state: token.sid,
    scope,
  };
}, ['username', 'password', 'scope']);

// --------------------------------------------------------------- userinfo

// oidc-provider's own userinfo endpoint refuses tokens that have an audience,
// and every Keycloak-shaped access token has one ("account"). Keycloak accepts
// them, so userinfo is answered here from the verified token.
async function userinfo(req, res) {
  const fail = (status, error, description) => {
    res.writeHead(status, {
      'content-type': 'application/json',
      'www-authenticate': `Bearer realm="${realm.realm}", error="${error}", error_description="${description}"`,
      'cache-control': 'no-store',
    });
    res.end(JSON.stringify({ error, error_description: description }));
  };
  const auth = req.headers.authorization ?? '';
  const m = /^Bearer\s+(\S+)$/i.exec(auth);
  if (!m) return fail(401, 'invalid_request', 'Token not provided');
  let payload;
  try {
    ({ payload } = await jose.jwtVerify(m[1], publicKey, { issuer, algorithms: ['RS256'] }));
  } catch {
    return fail(401, 'invalid_token', 'Token verification failed');
  }
  const user = usersById.get(payload.sub);
  if (!user || !user.enabled) return fail(401, 'invalid_token', 'User not found or disabled');
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(userClaims(user)));
}

// ------------------------------------------------------------- login page

// The sign-in step of the browser flows (device code, authorization code):
// the realm's usernames and passwords, checked like the password grant.
async function interaction(req, res) {
  const html = (status, body) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
  };
  try {
    await provider.interactionDetails(req, res);
  } catch {
    return html(400, page('Sign in', '<p>This sign-in has expired or was started elsewhere. Start again from your device.</p>'));
  }
  const form = (message) => page(`Sign in to ${realm.displayName || realm.realm}`, `${message ? `<p role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" autocomplete="off"><label for="username">Username</label><input id="username" name="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<div><button type="submit">Sign in</button></div></form>`);
  if (req.method === 'GET') return html(200, form());
  if (req.method !== 'POST') return html(405, page('Sign in', '<p>Method not allowed.</p>'));
  let raw = '';
  for await (const chunk of req) {
    raw += chunk;
    if (raw.length > 8192) return html(413, page('Sign in', '<p>Too large.</p>'));
  }
  const fields = new URLSearchParams(raw);
  const user = users.get(String(fields.get('username') ?? '').toLowerCase());
  if (!(user && user.enabled && passwordMatches(user, fields.get('password') ?? ''))) {
    return html(200, form('Invalid username or password.'));
  }
  log(`browser sign-in user=${user.username}`);
  await provider.interactionFinished(req, res, { login: { accountId: user.id } }, { mergeWithLastSubmission: false });
}

// ------------------------------------------------------------------ server

const handle = provider.callback();
const userinfoPath = `${realmPath}/protocol/openid-connect/userinfo`;

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  const pathname = url.split('?')[0];
  if (pathname === userinfoPath && (req.method === 'GET' || req.method === 'POST')) {
    userinfo(req, res).catch(() => { res.statusCode = 500; res.end(); });
    return;
  }
  if (pathname.startsWith(`${realmPath}/interaction/`)) {
    interaction(req, res).catch(() => { res.statusCode = 500; res.end(); });
    return;
  }
  if (pathname === realmPath || pathname.startsWith(`${realmPath}/`)) {
    // Mount the provider under /realms/<realm>: it derives its URLs from
    // req.originalUrl minus req.url.
    req.originalUrl = url;
    req.url = url.slice(realmPath.length) || '/';
    handle(req, res);
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: 'Realm does not exist' }));
});

server.listen(port, host, () => {
  log(`ready issuer=${issuer} kid=${signingKey.kid} clients=${clients.map((c) => c.client_id).join(',')} users=${users.size} token_ttl=${tokenTtl}s realm_file=${realmFile}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
