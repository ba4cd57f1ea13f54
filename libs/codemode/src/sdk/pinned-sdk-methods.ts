import { SDK_METHODS_TABLE } from './sdk-methods.generated.ts';
import { SdkMethods } from './sdk-methods.ts';

/** The pinned SDK's table, shared by every sandbox of a child process. */
export const pinnedSdkMethods = new SdkMethods(SDK_METHODS_TABLE);
