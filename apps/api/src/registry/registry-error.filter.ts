import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { Response } from 'express';
import { RegistryError, toRegistryErrorResponse } from '@stratum/registry';

/**
 * Errors under /v2/ in the distribution spec's shape, `{"errors":[{code,message,detail}]}`,
 * instead of the REST API's body (common/error.filter.ts).
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
@Catch()
export class RegistryErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('Registry');

  catch(error: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const { status, headers, body, internal } = toRegistryErrorResponse(fromHttpException(error));
    if (internal) {
      this.logger.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    }
    if (res.headersSent) {
      // Failed in the middle of a streamed body: all we can do is cut the connection.
      res.destroy();
      return;
    }
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    for (const [name, value] of Object.entries(headers)) {
      res.setHeader(name, value);
    }
    res.status(status).json(body);
  }
}

/** Nest's own exceptions (404 route, 403 guard, 413 from a parser) as registry errors. */
function fromHttpException(error: unknown): unknown {
  if (!(error instanceof HttpException)) {
    return error;
  }
  const status = error.getStatus();
  switch (status) {
    case 401:
      return new RegistryError('UNAUTHORIZED', error.message);
    case 403:
      return new RegistryError('DENIED', error.message);
    case 404:
      return new RegistryError('NAME_UNKNOWN', error.message, undefined, { status });
    default:
      return new RegistryError(status >= 500 ? 'UNKNOWN' : 'UNSUPPORTED', error.message, undefined, {
        status,
      });
  }
}
