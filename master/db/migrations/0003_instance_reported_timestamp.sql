ALTER TABLE "software_instances" ADD COLUMN "reported_timestamp" bigint;--> statement-breakpoint
-- Reports (and publishes for shared instances) made before this column existed were about the
-- version then current: an instance that was ready before the upgrade stays ready.
UPDATE "software_instances" SET "reported_timestamp" = "timestamp"
WHERE "reported_state" IS NOT NULL OR ("shared" AND "connection_parameters" <> '{}'::jsonb);