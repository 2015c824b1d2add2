-- Demo agency stores. Each agency owns one PostgreSQL schema; in production each
-- would be its own database on its own host. RRNs are stored canonical: "YYMMDD-GNNNNNN".
-- Indexes other than primary keys are created after bulk loading (see seed.py).

create schema if not exists registry;
create schema if not exists nhis;
create schema if not exists nps;
create schema if not exists nts;
create schema if not exists mma;

create table if not exists registry.households (
    id            text primary key,          -- "H" + 9 digits
    head_rrn      text not null,
    region        text not null,             -- e.g. "Seoul", "Gyeonggi-do"
    city          text not null,             -- e.g. "Gangnam-gu", "Suwon-si"
    street        text not null,             -- e.g. "12 Teheran-ro 45-gil"
    postal_code   text not null,             -- 5 digits
    registered_on date not null              -- when the household registered this address
);

create table if not exists registry.residents (
    rrn          text primary key,
    name         text not null,
    birth_date   date not null,
    sex          text not null,              -- MALE | FEMALE
    is_foreign   boolean not null,
    status       text not null,              -- ACTIVE | DECEASED | EMIGRATED
    household_id text not null,
    relationship text not null               -- HEAD | SPOUSE | CHILD | PARENT | SIBLING | OTHER
);

create table if not exists nhis.enrolments (
    rrn             text primary key,
    insured_type    text not null,           -- EMPLOYEE | SELF_EMPLOYED | DEPENDENT
    enrolled_on     date not null,
    monthly_premium integer not null,        -- KRW; 0 for dependents
    dependents      integer not null,        -- people insured through this person
    insured_by      text                     -- RRN of the insured person, for dependents
);

create table if not exists nps.subscriptions (
    rrn                      text primary key,
    subscriber_type          text not null,  -- WORKPLACE | REGIONAL | VOLUNTARY | RECIPIENT
    months_contributed       integer not null,
    expected_monthly_benefit integer,        -- KRW, for subscribers not yet receiving
    monthly_benefit          integer,        -- KRW, for recipients
    benefit_since            date            -- for recipients
);

create table if not exists nts.tax_returns (
    rrn             text not null,
    tax_year        integer not null,
    reported_income bigint not null,         -- KRW
    tax_assessed    bigint not null,
    tax_paid        bigint not null,
    arrears         bigint not null,
    primary key (rrn, tax_year)
);

create table if not exists mma.service_records (
    rrn              text primary key,
    status           text not null,          -- NOT_APPLICABLE | PENDING | SERVING | COMPLETED | EXEMPT
    branch           text,                   -- ARMY | NAVY | AIR_FORCE | MARINES | SOCIAL_SERVICE
    enlisted_on      date,
    discharged_on    date,
    exemption_reason text
);
