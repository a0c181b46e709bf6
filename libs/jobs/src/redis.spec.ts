import { EventEmitter } from 'node:events';
import { Logger } from '@nestjs/common';
import { logErrorsThrottled } from './redis';

describe('logErrorsThrottled', () => {
  afterEach(() => jest.useRealTimers());

  it('logs the first error, then at most one per interval, naming the source', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const emitter = new EventEmitter();
    const logger = new Logger('test');
    const warn = jest.spyOn(logger, 'warn').mockImplementation(() => undefined);
    logErrorsThrottled(emitter, logger, 'queue build', 10_000);
    for (let i = 0; i < 50; i++) {
      emitter.emit('error', new Error(`connect ECONNREFUSED (attempt ${i})`));
      jest.advanceTimersByTime(100); // 50 attempts over 5 s
    }
    expect(warn.mock.calls).toEqual([['queue build: connect ECONNREFUSED (attempt 0)']]);
    jest.advanceTimersByTime(5_000);
    emitter.emit('error', new Error('connect ECONNREFUSED (later)'));
    expect(warn).toHaveBeenCalledTimes(2);
    expect(warn).toHaveBeenLastCalledWith('queue build: connect ECONNREFUSED (later)');
  });
});
