import { Controller, Get, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { NotificationDelivery } from '@stratum/contracts';
import { ZodPipe } from '../common/zod-query.pipe';
import { NotificationDeliveryService } from './notification-delivery.service';
import { HistoryQuerySchema } from './notifications.dto';

@ApiTags('notifications')
@Controller('api/v1/notifications')
export class NotificationsController {
  constructor(private readonly deliveries: NotificationDeliveryService) {}

  @Get('deliveries')
  @ApiOperation({ summary: 'The last notification delivery attempts, newest first (limit, at most 1000)' })
  history(@Query(new ZodPipe(HistoryQuerySchema)) q: { limit: number }): Promise<NotificationDelivery[]> {
    return this.deliveries.history(q.limit);
  }
}
