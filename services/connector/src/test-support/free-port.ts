export { freePort } from '@warden/testing';
