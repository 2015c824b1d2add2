-- Change notification for the SQL demo agencies: every change to a record NOTIFYs the
-- gateway (channel gateway_invalidate), which drops its cached copy. An agency of your own
-- can do the same: payload {"dataset": "...", "keys": ["..."]}.

create or replace function public.gateway_notify() returns trigger
language plpgsql as $$
declare
    changed jsonb := to_jsonb(coalesce(NEW, OLD));
begin
    perform pg_notify(
        'gateway_invalidate',
        json_build_object('dataset', TG_ARGV[0], 'keys', json_build_array(changed ->> TG_ARGV[1]))::text
    );
    return null;
end $$;

-- A resident's row also decides who is in which household: tell both.
create or replace function public.gateway_notify_resident() returns trigger
language plpgsql as $$
declare
    households jsonb := '[]'::jsonb;
begin
    if TG_OP <> 'INSERT' then households := households || to_jsonb(OLD.household_id); end if;
    if TG_OP <> 'DELETE' then households := households || to_jsonb(NEW.household_id); end if;
    perform pg_notify('gateway_invalidate', json_build_object(
        'dataset', 'resident', 'keys', json_build_array(coalesce(NEW.rrn, OLD.rrn)))::text);
    perform pg_notify('gateway_invalidate', json_build_object(
        'dataset', 'household', 'keys', households)::text);
    return null;
end $$;

create or replace trigger gateway_notify after insert or update or delete on registry.residents
    for each row execute function public.gateway_notify_resident();
create or replace trigger gateway_notify after insert or update or delete on registry.households
    for each row execute function public.gateway_notify('household', 'id');
create or replace trigger gateway_notify after insert or update or delete on nhis.enrolments
    for each row execute function public.gateway_notify('insurance', 'rrn');
create or replace trigger gateway_notify after insert or update or delete on nps.subscriptions
    for each row execute function public.gateway_notify('pension', 'rrn');
