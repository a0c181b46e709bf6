import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { Response } from 'express';
import { ERROR_STATUS, ErrorBody, isErrorCode } from '@stratum/contracts';

/**
 * One place where errors become HTTP answers: a domain error's `code` decides the status
 * (ERROR_STATUS), Nest's own HttpExceptions keep theirs, anything else is a 500 that is logged.
 */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('ErrorFilter');

  catch(error: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const body = toErrorBody(error);
    if (body.statusCode >= 500) {
      this.logger.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(body.statusCode).json(body);
  }
}

export function toErrorBody(error: unknown): ErrorBody {
  if (error instanceof HttpException) {
    const response = error.getResponse();
    const message =
      typeof response === 'object' && response !== null && 'message' in response
        ? String(response.message)
        : error.message;
    return { statusCode: error.getStatus(), code: httpCode(error.getStatus()), message };
  }
  if (error instanceof Error && 'code' in error && isErrorCode(error.code)) {
    const detail = (error as { detail?: Record<string, unknown> }).detail;
    return {
      statusCode: ERROR_STATUS[error.code],
      code: error.code,
      message: error.message,
      ...(detail ? { detail } : {}),
    };
  }
  return { statusCode: 500, code: 'INTERNAL', message: 'internal error' };
}

function httpCode(status: number): string {
  switch (status) {
    case 400:
      return 'BAD_REQUEST';
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'DENIED';
    case 404:
      return 'NOT_FOUND';
    case 413:
      return 'TOO_LARGE';
    default:
      return status >= 500 ? 'INTERNAL' : 'BAD_REQUEST';
  }
}
