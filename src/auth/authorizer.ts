import { createVerifier, TokenError } from 'fast-jwt'
import type { JwtConfig } from '../config.js'
import { ForbiddenError, TokenInvalidError, TokenMissingError } from '../errors.js'
import { compilePatterns, patternProblem, type TopicMatcher } from '../topic-patterns.js'

/** What a verified token allows, and until when. */
export interface Grant {
  subject?: string
  /** Milliseconds since the epoch when the token expires; undefined when it does not. */
  expiresAt?: number
}

export interface AuthorizerOptions {
  jwt: JwtConfig | undefined
  privateTopics: string[]
  publicSubscribe: boolean
}

interface HeraldClaims {
  publish: TopicMatcher
  subscribe: TopicMatcher
}

/**
 * Decides who may publish and subscribe where. With no key configured (open development mode) anyone may
 * publish and every topic is public; with one, publishing needs a token whose `herald.publish` patterns cover
 * every topic, and private topics need one whose `herald.subscribe` patterns cover them.
 */
export class Authorizer {
  readonly open: boolean
  private readonly verify: ((token: string) => Record<string, unknown>) | undefined
  private readonly isPrivateTopic: TopicMatcher

  constructor (private readonly options: AuthorizerOptions) {
    this.open = options.jwt === undefined
    const jwt = options.jwt
    this.verify = jwt === undefined
      ? undefined
      : createVerifier({
        key: jwt.key,
        // Pinned to the key's type: `none`, or HS256 signed with a public key, is refused.
        algorithms: jwt.algorithms,
        ...(jwt.issuer === undefined ? {} : { allowedIss: jwt.issuer }),
        ...(jwt.audience === undefined ? {} : { allowedAud: jwt.audience }),
        // fast-jwt checks iss and aud only when a token has them: a configured one must be there.
        requiredClaims: [...(jwt.issuer === undefined ? [] : ['iss']), ...(jwt.audience === undefined ? [] : ['aud'])],
        cache: 1000
      }) as (token: string) => Record<string, unknown>
    const matchesPrivate = compilePatterns(options.privateTopics)
    this.isPrivateTopic = options.publicSubscribe ? matchesPrivate : () => true
  }

  isPrivate (topic: string): boolean {
    return !this.open && this.isPrivateTopic(topic)
  }

  /** Checks a publish; throws TokenMissingError or TokenInvalidError (401) or ForbiddenError (403), naming what is wrong. */
  authorizePublish (token: string | undefined, topics: readonly string[]): Grant {
    if (this.open) return {}
    if (token === undefined) throw new TokenMissingError('publishing needs a token: send Authorization: Bearer <jwt>')
    const { grant, claims } = this.verified(token)
    const refused = topics.find((topic) => !claims.publish(topic))
    if (refused !== undefined) throw new ForbiddenError(`this token may not publish to topic ${JSON.stringify(refused)}`)
    return grant
  }

  /** Checks a stream's topics; public topics need no token. Throws like authorizePublish, before any stream byte. */
  authorizeSubscribe (token: string | undefined, topics: readonly string[]): Grant {
    const privateTopics = topics.filter((topic) => this.isPrivate(topic))
    if (privateTopics.length === 0) return {}
    if (token === undefined) {
      throw new TokenMissingError(`topic ${JSON.stringify(privateTopics[0])} is private: send a token (Authorization: Bearer, the token cookie, or access_token)`)
    }
    const { grant, claims } = this.verified(token)
    const refused = privateTopics.find((topic) => !claims.subscribe(topic))
    if (refused !== undefined) throw new ForbiddenError(`this token may not subscribe to topic ${JSON.stringify(refused)}`)
    return grant
  }

  /**
   * The subject of a token that verifies, else undefined. Rate limits key on it: a forged or made-up token must
   * not open a fresh budget, so only a verified subject gets its own; anything else counts against its address.
   */
  verifiedSubject (token: string | undefined): string | undefined {
    if (this.verify === undefined || token === undefined || token === '') return undefined
    try {
      const subject = this.verify(token).sub
      return typeof subject === 'string' && subject !== '' ? subject : undefined
    } catch {
      return undefined
    }
  }

  private verified (token: string): { grant: Grant, claims: HeraldClaims } {
    let payload: Record<string, unknown>
    try {
      payload = (this.verify as (token: string) => Record<string, unknown>)(token)
    } catch (error) {
      throw new TokenInvalidError(describeTokenError(error, this.options.jwt as JwtConfig))
    }
    const grant: Grant = {}
    if (typeof payload.sub === 'string') grant.subject = payload.sub
    if (typeof payload.exp === 'number') grant.expiresAt = payload.exp * 1000
    return { grant, claims: parseClaims(payload.herald) }
  }
}

function parseClaims (claim: unknown): HeraldClaims {
  const patterns = (name: 'publish' | 'subscribe'): string[] => {
    if (claim === undefined || claim === null) return []
    const value = (claim as Record<string, unknown>)[name]
    if (value === undefined) return []
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && patternProblem(item) === undefined)) {
      throw new TokenInvalidError(`the token's herald.${name} claim must be an array of topic patterns`)
    }
    return value as string[]
  }
  if (claim !== undefined && (typeof claim !== 'object' || claim === null || Array.isArray(claim))) {
    throw new TokenInvalidError('the token\'s herald claim must be an object { publish, subscribe }')
  }
  return { publish: compilePatterns(patterns('publish')), subscribe: compilePatterns(patterns('subscribe')) }
}

function describeTokenError (error: unknown, jwt: JwtConfig): string {
  if (!(error instanceof TokenError)) return 'the token could not be verified'
  switch (error.code) {
    case TokenError.codes.expired: return 'the token has expired'
    case TokenError.codes.inactive: return 'the token is not valid yet (nbf)'
    case TokenError.codes.invalidSignature: return 'the token signature is invalid'
    case TokenError.codes.invalidAlgorithm: return `the token algorithm is not accepted; expected ${jwt.algorithms.join(', ')}`
    case TokenError.codes.invalidClaimValue: return 'the token issuer or audience is not accepted'
    case TokenError.codes.missingRequiredClaim: return 'the token has no issuer or audience, and this server requires them'
    case TokenError.codes.missingSignature: return 'the token is unsigned'
    default: return 'the token is malformed'
  }
}
