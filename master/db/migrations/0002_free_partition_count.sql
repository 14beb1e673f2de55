DROP INDEX "computers_price_idx";--> statement-breakpoint
ALTER TABLE "computers" ADD COLUMN "free_partitions" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "computers_available_idx" ON "computers" USING btree ("price_per_partition_hour","id") WHERE "computers"."free_partitions" > 0 and "computers"."deregistered_at" is null;--> statement-breakpoint
UPDATE "computers" SET "free_partitions" = (SELECT count(*) FROM "partitions" p WHERE p."computer_id" = "computers"."id" AND p."state" = 'free');
