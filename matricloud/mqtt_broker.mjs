// The embedded MQTT broker of `make run` and `make test`: aedes (npm) on one TCP port.
//
// It enforces the very files Mosquitto reads in production (`manage.py mqtt_credentials
// write`): the password file with `$7$` PBKDF2-SHA512 hashes and the ACL file with `user`,
// `topic` and `pattern` (%u, %c) lines. Every step is checked: CONNECT (username and
// password), PUBLISH and last wills (write access), SUBSCRIBE (the filter must lie inside a
// readable filter, so no wildcard reaches another gateway) and every delivery, retained
// messages included (read access), because a subscription check alone does not stop a
// retained message from leaking. Both files are re-read when they change on disk.
//
//   node matricloud/mqtt_broker.mjs --bind 127.0.0.1:18830 [--auth-dir DIR] [--max-payload N]
//
// Without --auth-dir every client is anonymous and may do anything (the test run). It logs
// one line per refusal to stdout and stops on SIGTERM or SIGINT.

import { createServer } from 'node:net'
import { pbkdf2, timingSafeEqual } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Aedes } from 'aedes'

const READ = 'read'
const WRITE = 'write'
const ACCESS = {
  read: [READ],
  write: [WRITE],
  readwrite: [READ, WRITE],
  deny: []
}
const RELOAD_CHECK_MS = 1000
const DROP_TOPIC = '$SYS/matricloud/refused'

// --- logging: one line per event, at most LOG_BURST lines a second ----------------------

const LOG_BURST = 50
let logWindow = 0
let logCount = 0
let logDropped = 0

function log (message) {
  const now = Date.now()
  const second = Math.floor(now / 1000)
  if (second !== logWindow) {
    if (logDropped) {
      process.stdout.write(`${new Date(now).toISOString()} (${logDropped} more lines not logged)\n`)
    }
    logWindow = second
    logCount = 0
    logDropped = 0
  }
  if (++logCount > LOG_BURST) {
    logDropped++
    return
  }
  process.stdout.write(`${new Date(now).toISOString()} ${message}\n`)
}

// --- topics -------------------------------------------------------------------------------

/** MQTT matching of a concrete topic against a filter; wildcards never match `$…` at the root. */
export function topicMatches (filter, topic) {
  const f = filter.split('/')
  const t = topic.split('/')
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false
  }
  return f.length === t.length
}

/** Every topic `inner` can match is matched by `outer`. */
export function filterCovers (outer, inner) {
  const o = outer.split('/')
  const n = inner.split('/')
  for (let i = 0; i < o.length; i++) {
    if (o[i] === '#') return true
    if (i >= n.length || n[i] === '#') return false
    if (o[i] === '+') continue
    if (n[i] === '+' || n[i] !== o[i]) return false
  }
  return o.length === n.length
}

/** Some topic matches both filters. */
export function filtersOverlap (a, b) {
  const x = a.split('/')
  const y = b.split('/')
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const p = x[i]
    const q = y[i]
    if (p === '#' || q === '#') return true
    if (p === undefined || q === undefined) return false
    if (p !== '+' && q !== '+' && p !== q) return false
  }
  return true
}

// --- the two files --------------------------------------------------------------------------

/** A file parsed again when its mtime or size changes (checked at most once a second). */
class ReloadingFile {
  constructor (path, parse) {
    this.path = path
    this.parse = parse
    this.stamp = null
    this.checkedAt = 0
    this.generation = 0
    this.value = parse('')
  }

  get () {
    const now = Date.now()
    if (now - this.checkedAt < RELOAD_CHECK_MS) return this.value
    this.checkedAt = now
    let stamp
    try {
      const st = statSync(this.path)
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`
      if (stamp !== this.stamp) {
        this.value = this.parse(readFileSync(this.path, 'utf8'))
        this.stamp = stamp
        this.generation++
        log(`loaded ${this.path}`)
      }
    } catch (err) {
      if (this.stamp !== 'missing') {
        log(`cannot read ${this.path} (${err.code || err.message}): every client is refused`)
        this.value = this.parse('')
        this.stamp = 'missing'
        this.generation++
      }
    }
    return this.value
  }
}

function parsePasswordFile (text) {
  const users = new Map()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const colon = line.indexOf(':')
    if (colon > 0) users.set(line.slice(0, colon), line.slice(colon + 1))
  }
  return users
}

function parseAclFile (text) {
  const rules = { anonymous: [], users: new Map(), patterns: [] }
  let current = rules.anonymous
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const space = line.indexOf(' ')
    const word = space < 0 ? line : line.slice(0, space)
    const rest = space < 0 ? '' : line.slice(space + 1).trim()
    if (word === 'user') {
      if (!rules.users.has(rest)) rules.users.set(rest, [])
      current = rules.users.get(rest)
    } else if (word === 'topic' || word === 'pattern') {
      const gap = rest.indexOf(' ')
      let access = gap < 0 ? rest : rest.slice(0, gap)
      let topic = gap < 0 ? '' : rest.slice(gap + 1).trim()
      if (!(access in ACCESS)) { // "topic <filter>" means readwrite
        access = 'readwrite'
        topic = rest
      }
      const rule = { access: ACCESS[access], topic, deny: access === 'deny' }
      if (topic) (word === 'pattern' ? rules.patterns : current).push(rule)
    } else {
      log(`ignoring ACL line ${JSON.stringify(raw)}`)
    }
  }
  return rules
}

/** %u and %c stand for a whole level; a rule naming an absent value applies to no one. */
function substitute (topic, username, clientId) {
  const levels = topic.split('/')
  for (let i = 0; i < levels.length; i++) {
    const value = levels[i] === '%u' ? username : levels[i] === '%c' ? clientId : undefined
    if (levels[i] === '%u' || levels[i] === '%c') {
      if (!value || /[/+#]/.test(value)) return null
      levels[i] = value
    }
  }
  return levels.join('/')
}

function rulesFor (acl, username, clientId) {
  const own = username ? (acl.users.get(username) || []) : acl.anonymous
  const out = [...own]
  for (const rule of acl.patterns) {
    const topic = substitute(rule.topic, username, clientId)
    if (topic !== null) out.push({ ...rule, topic })
  }
  return out
}

function allows (rules, topic, access) {
  if (rules.some(r => r.deny && topicMatches(r.topic, topic))) return false
  return rules.some(r => r.access.includes(access) && topicMatches(r.topic, topic))
}

function stripShare (filter) {
  if (!filter.startsWith('$share/')) return filter
  const parts = filter.split('/')
  return parts.length >= 3 ? parts.slice(2).join('/') : ''
}

function allowsSubscription (rules, filter) {
  filter = stripShare(filter)
  if (!filter) return false
  if (rules.some(r => r.deny && filtersOverlap(r.topic, filter))) return false
  return rules.some(r => r.access.includes(READ) && filterCovers(r.topic, filter))
}

function verifyHash (password, encoded) {
  return new Promise(resolve => {
    const parts = (encoded || '').split('$')
    if (parts.length !== 5 || parts[0] !== '' || parts[1] !== '7') return resolve(false)
    const rounds = Number(parts[2])
    const salt = Buffer.from(parts[3], 'base64')
    const expected = Buffer.from(parts[4], 'base64')
    if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10_000_000 || !expected.length) {
      return resolve(false)
    }
    pbkdf2(password, salt, rounds, expected.length, 'sha512', (err, actual) => {
      resolve(!err && actual.length === expected.length && timingSafeEqual(actual, expected))
    })
  })
}

// --- the broker -----------------------------------------------------------------------------

function describe (client) {
  const user = client && client.mcUser ? ` user ${client.mcUser}` : ''
  const addr = client && client.conn && client.conn.remoteAddress
  return `${client ? client.id : '(no client)'}${user}${addr ? ` from ${addr}` : ''}`
}

function makeGuard (authDir, maxPayload) {
  const passwords = authDir && new ReloadingFile(join(authDir, 'passwd'), parsePasswordFile)
  const acl = authDir && new ReloadingFile(join(authDir, 'acl'), parseAclFile)

  /** The client's rules, compiled once per ACL file version. */
  function clientRules (client) {
    const current = acl.get()
    if (client.mcRulesGeneration !== acl.generation) {
      client.mcRules = rulesFor(current, client.mcUser, client.id)
      client.mcRulesGeneration = acl.generation
    }
    return client.mcRules
  }

  return {
    authenticate (client, username, password, callback) {
      client.mcUser = username || null
      if (!passwords) return callback(null, true)
      const hashed = username ? passwords.get().get(username) : undefined
      if (hashed === undefined) {
        log(`refused connection of ${describe(client)}: ${username ? 'unknown user' : 'no username'}`)
        const error = new Error('not authorized')
        error.returnCode = username ? 4 : 5
        return callback(error, false)
      }
      verifyHash(password ? password.toString('utf8') : '', hashed).then(ok => {
        if (!ok) {
          log(`refused connection of ${describe(client)}: wrong password`)
          const error = new Error('bad user name or password')
          error.returnCode = 4
          return callback(error, false)
        }
        callback(null, true)
      })
    },

    authorizePublish (client, packet, callback) {
      const topic = packet.topic || ''
      const size = packet.payload ? packet.payload.length : 0
      if (size > maxPayload) {
        log(`dropped publish of ${describe(client)} to ${topic}: ${size} bytes > ${maxPayload}`)
        return callback(new Error('payload too large'))
      }
      if (topic.startsWith('$SYS')) {
        log(`refused publish of ${describe(client)} to ${topic}: reserved topic`)
        return callback(new Error('$SYS topics are reserved'))
      }
      if (!acl) return callback(null)
      if (!client) return callback(new Error('will of an unknown client'))
      if (!allows(clientRules(client), topic, WRITE)) {
        // Acknowledged and dropped, as Mosquitto does: closing the connection would make a
        // misconfigured gateway reconnect and resend the same QoS-1 message forever. The
        // drop topic is a `$` topic that no rule lets anyone read.
        log(`refused publish of ${describe(client)} to ${topic}`)
        packet.topic = DROP_TOPIC
        packet.retain = false
      }
      callback(null)
    },

    authorizeSubscribe (client, subscription, callback) {
      if (!acl) return callback(null, subscription)
      if (!allowsSubscription(clientRules(client), subscription.topic)) {
        log(`refused subscription of ${describe(client)} to ${subscription.topic}`)
        return callback(null, null) // SUBACK 0x80 for this filter
      }
      callback(null, subscription)
    },

    authorizeForward (client, packet) {
      if (!acl) return packet
      if (!allows(clientRules(client), packet.topic, READ)) {
        if (packet.retain) log(`withheld retained ${packet.topic} from ${describe(client)}`)
        return null
      }
      return packet
    }
  }
}

async function main () {
  const { values } = parseArgs({
    options: {
      bind: { type: 'string', default: '127.0.0.1:18830' },
      'auth-dir': { type: 'string' },
      'max-payload': { type: 'string', default: String(1024 * 1024) }
    }
  })
  const colon = values.bind.lastIndexOf(':')
  const host = values.bind.slice(0, colon) || '127.0.0.1'
  const port = Number(values.bind.slice(colon + 1))
  const maxPayload = Number(values['max-payload'])
  const guard = makeGuard(values['auth-dir'], maxPayload)

  const broker = await Aedes.createBroker({
    ...guard,
    // A subscriber that stops reading must not stall delivery to everyone else.
    drainTimeout: 30000,
    concurrency: 1000,
    // Queued packets of a client whose session is still being set up (a burst right
    // after CONNECT); the default of 42 drops clients that publish at once.
    queueLimit: 1000
  })
  broker.on('clientError', (client, err) => {
    if (err && err.message !== 'connection closed') log(`closed ${describe(client)}: ${err.message}`)
  })
  broker.on('connectionError', (client, err) => {
    log(`refused connection${client && client.conn ? ` from ${client.conn.remoteAddress}` : ''}: ${err.message}`)
  })

  // Small packets (a command, its PUBACK) leave at once instead of waiting for Nagle.
  const server = createServer({ noDelay: true }, broker.handle)
  server.on('error', err => {
    log(`cannot listen on ${host}:${port}: ${err.message}`)
    process.exit(1)
  })
  server.listen(port, host, () => {
    log(`aedes listening on ${host}:${port}${values['auth-dir'] ? ` with ${values['auth-dir']}/passwd and acl` : ' (anonymous)'}`)
  })

  let stopping = false
  const stop = signal => {
    if (stopping) return
    stopping = true
    log(`${signal}: stopping`)
    server.close()
    broker.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 3000).unref()
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

main().catch(err => {
  log(`broker failed: ${err.stack || err}`)
  process.exit(1)
})
