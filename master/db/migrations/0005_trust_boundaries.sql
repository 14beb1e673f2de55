CREATE TABLE "organisation_members" (
	"organisation_id" text NOT NULL,
	"person_id" text NOT NULL,
	"role" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "organisation_members_organisation_id_person_id_pk" PRIMARY KEY("organisation_id","person_id")
);
--> statement-breakpoint
ALTER TABLE "persons" DROP CONSTRAINT "persons_organisation_id_organisations_id_fk";
--> statement-breakpoint
ALTER TABLE "computers" ADD COLUMN "allocation_scope" text DEFAULT 'personal' NOT NULL;--> statement-breakpoint
ALTER TABLE "software_instances" ADD COLUMN "sharing_scope" text DEFAULT 'personal' NOT NULL;--> statement-breakpoint
ALTER TABLE "organisation_members" ADD CONSTRAINT "organisation_members_organisation_id_organisations_id_fk" FOREIGN KEY ("organisation_id") REFERENCES "public"."organisations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "organisation_members" ADD CONSTRAINT "organisation_members_person_id_persons_id_fk" FOREIGN KEY ("person_id") REFERENCES "public"."persons"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "organisation_members_person_idx" ON "organisation_members" USING btree ("person_id");--> statement-breakpoint
CREATE INDEX "software_instances_waiting_idx" ON "software_instances" USING btree ("created_at") WHERE "software_instances"."partition_id" is null and "software_instances"."shared" = false and "software_instances"."destroyed_at" is null and "software_instances"."requested_state" <> 'destroyed';--> statement-breakpoint
ALTER TABLE "persons" DROP COLUMN "organisation_id";--> statement-breakpoint
ALTER TABLE "persons" ADD COLUMN "revoked_at" timestamp with time zone;