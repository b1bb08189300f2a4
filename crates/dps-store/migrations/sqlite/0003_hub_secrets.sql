-- Linked hubs' connector credentials (IoT Hub connection strings, broker passwords), sealed.
ALTER TABLE linked_hubs ADD COLUMN secrets TEXT;
