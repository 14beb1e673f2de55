CREATE TABLE "authority" (
	"id" integer PRIMARY KEY NOT NULL,
	"certificate_pem" text NOT NULL,
	"private_key_pem" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "certificates" (
	"serial" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"subject_id" text NOT NULL,
	"certificate_pem" text NOT NULL,
	"private_key_pem" text,
	"issued_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "computers" (
	"id" text PRIMARY KEY NOT NULL,
	"title" text NOT NULL,
	"owner_id" text NOT NULL,
	"region" text,
	"capabilities" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"price_per_partition_hour" double precision DEFAULT 0 NOT NULL,
	"desired_version" bigint DEFAULT 1 NOT NULL,
	"last_contact_at" timestamp with time zone,
	"deregistered_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "contracts" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "contracts_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"instance_id" text NOT NULL,
	"requester_id" text NOT NULL,
	"provider_id" text NOT NULL,
	"computer_id" text NOT NULL,
	"partition_reference" text NOT NULL,
	"conditions" jsonb NOT NULL,
	"price_per_hour" double precision NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ended_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "organisations" (
	"id" text PRIMARY KEY NOT NULL,
	"title" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "partitions" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "partitions_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"computer_id" text NOT NULL,
	"reference" text NOT NULL,
	"addresses" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"tap" text,
	"extras" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"state" text DEFAULT 'free' NOT NULL,
	"instance_id" text
);
--> statement-breakpoint
CREATE TABLE "persons" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"email" text,
	"organisation_id" text,
	"is_admin" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "registration_tokens" (
	"token_hash" text PRIMARY KEY NOT NULL,
	"person_id" text NOT NULL,
	"computer_id" text,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "software_installations" (
	"computer_id" text NOT NULL,
	"url" text NOT NULL,
	"requested_state" text NOT NULL,
	"reported_state" text,
	"error_log" text,
	"requested_at" timestamp with time zone DEFAULT now() NOT NULL,
	"reported_at" timestamp with time zone,
	CONSTRAINT "software_installations_computer_id_url_pk" PRIMARY KEY("computer_id","url")
);
--> statement-breakpoint
CREATE TABLE "software_instances" (
	"id" text PRIMARY KEY NOT NULL,
	"title" text NOT NULL,
	"scope" text NOT NULL,
	"software_release_url" text NOT NULL,
	"software_type" text DEFAULT 'default' NOT NULL,
	"parameters" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"sla" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"shared" boolean DEFAULT false NOT NULL,
	"requested_state" text NOT NULL,
	"reported_state" text,
	"reported_at" timestamp with time zone,
	"error_log" text,
	"connection_parameters" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"owner_id" text NOT NULL,
	"parent_id" text,
	"root_id" text NOT NULL,
	"partition_id" integer,
	"host_instance_id" text,
	"timestamp" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"destroyed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "usage_records" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "usage_records_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"computer_id" text NOT NULL,
	"partition_reference" text NOT NULL,
	"instance_id" text,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"cpu_seconds" double precision DEFAULT 0 NOT NULL,
	"memory_bytes" bigint DEFAULT 0 NOT NULL,
	"disk_bytes" bigint DEFAULT 0 NOT NULL,
	"network_rx_bytes" bigint DEFAULT 0 NOT NULL,
	"network_tx_bytes" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "computers" ADD CONSTRAINT "computers_owner_id_persons_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."persons"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "contracts" ADD CONSTRAINT "contracts_requester_id_persons_id_fk" FOREIGN KEY ("requester_id") REFERENCES "public"."persons"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "contracts" ADD CONSTRAINT "contracts_provider_id_persons_id_fk" FOREIGN KEY ("provider_id") REFERENCES "public"."persons"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "contracts" ADD CONSTRAINT "contracts_computer_id_computers_id_fk" FOREIGN KEY ("computer_id") REFERENCES "public"."computers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "partitions" ADD CONSTRAINT "partitions_computer_id_computers_id_fk" FOREIGN KEY ("computer_id") REFERENCES "public"."computers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "persons" ADD CONSTRAINT "persons_organisation_id_organisations_id_fk" FOREIGN KEY ("organisation_id") REFERENCES "public"."organisations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "registration_tokens" ADD CONSTRAINT "registration_tokens_person_id_persons_id_fk" FOREIGN KEY ("person_id") REFERENCES "public"."persons"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "software_installations" ADD CONSTRAINT "software_installations_computer_id_computers_id_fk" FOREIGN KEY ("computer_id") REFERENCES "public"."computers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "software_instances" ADD CONSTRAINT "software_instances_owner_id_persons_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."persons"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_computer_id_computers_id_fk" FOREIGN KEY ("computer_id") REFERENCES "public"."computers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "certificates_subject_idx" ON "certificates" USING btree ("kind","subject_id");--> statement-breakpoint
CREATE INDEX "computers_owner_idx" ON "computers" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "contracts_requester_idx" ON "contracts" USING btree ("requester_id");--> statement-breakpoint
CREATE INDEX "contracts_instance_idx" ON "contracts" USING btree ("instance_id");--> statement-breakpoint
CREATE UNIQUE INDEX "partitions_computer_reference_idx" ON "partitions" USING btree ("computer_id","reference");--> statement-breakpoint
CREATE UNIQUE INDEX "partitions_instance_idx" ON "partitions" USING btree ("instance_id");--> statement-breakpoint
CREATE INDEX "partitions_free_idx" ON "partitions" USING btree ("computer_id") WHERE "partitions"."state" = 'free';--> statement-breakpoint
CREATE UNIQUE INDEX "software_instances_scope_title_idx" ON "software_instances" USING btree ("scope","title");--> statement-breakpoint
CREATE INDEX "software_instances_root_idx" ON "software_instances" USING btree ("root_id");--> statement-breakpoint
CREATE INDEX "software_instances_owner_idx" ON "software_instances" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "software_instances_host_idx" ON "software_instances" USING btree ("host_instance_id");--> statement-breakpoint
CREATE INDEX "usage_records_instance_idx" ON "usage_records" USING btree ("instance_id","period_start");